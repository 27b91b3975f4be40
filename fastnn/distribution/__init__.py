"""fastnn.distribution: data-parallel training over processes and machines, with Keras 3's names.

    import fastnn as keras
    keras.distribution.initialize()                         # joins the mpiexec job, if any
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    model.fit(x, y, batch_size=256, epochs=3)               # each global batch split over the processes

    $ mpiexec -n 4 python train.py                          # pip install "fastnn[mpi]"
    $ python train.py                                       # the same script, one process

Every process runs the same script on the same data. Under `DataParallel` each global batch
of `fit` / `evaluate` is split over the processes (the first `batch % processes` of them take
one row more), each computes its rows, and one all-reduce over the flat gradient arena per step
sums their gradients, so all processes take the same optimizer step and compute what one
process computes with the same global batch (to float rounding): BatchNormalization statistics
are summed over the processes, dropout masks are drawn by global sample index, the loss is
divided by the global batch size, metrics and the loss tracker sum their states. `predict`
splits the rows and gathers the outputs in order on every process. The progress bar,
ModelCheckpoint, CSVLogger and `model.save` act on process 0; EarlyStopping and
ReduceLROnPlateau decisions are process 0's, sent to all. See docs/distributed.md.

The engine is MPI through mpi4py (`pip install "fastnn[mpi]"` brings mpi4py and the MPICH wheel
with its `mpiexec`); none of it is imported until a job with several processes starts.
"""
from __future__ import annotations

import os
import signal
import sys
import warnings

import numpy as np

from fastnn.distribution import comm as _comm_module

__all__ = ["initialize", "list_devices", "get_device_count", "process_count", "process_index",
           "DeviceMesh", "DataParallel", "distribution", "set_distribution"]

DEFAULT_BATCH_DIM_NAME = "batch"

_state = {"comm": None, "initialized": False, "distribution": None}


# ------------------------------------------------------------------------------ the job
def initialize(job_addresses=None, num_processes=None, process_id=None):
    """Join the job of processes this one was started in (call it first, as in Keras).

    Under `mpiexec` (or a cluster's MPI launcher) this initialises MPI: the process count and
    this process's index come from the launcher. Started alone, it does nothing and the script
    runs as one process. `job_addresses` is not used (MPI's launcher wires the processes);
    `num_processes` and `process_id`, when given, are checked against the launcher's.

    Each process then uses cores-on-its-host / processes-on-its-host threads (at least 1),
    unless FASTNN_NUM_THREADS or fastnn.set_num_threads says otherwise.
    """
    if num_processes is None and os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        num_processes = int(os.environ["KERAS_DISTRIBUTION_NUM_PROCESSES"])
    if process_id is None and os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID"):
        process_id = int(os.environ["KERAS_DISTRIBUTION_PROCESS_ID"])
    c = _start(force=num_processes is not None and num_processes > 1)
    size, rank = (1, 0) if c is None else (c.size, c.rank)
    if num_processes is not None and int(num_processes) != size:
        raise ValueError(f"initialize: num_processes={num_processes} but the launcher started {size} "
                         f"process(es); start the script with `mpiexec -n {num_processes} python ...`.")
    if process_id is not None and int(process_id) != rank:
        raise ValueError(f"initialize: process_id={process_id} but the launcher gave this process index "
                         f"{rank}; leave process_id=None under mpiexec.")


def _start(force=False):
    """The job's Comm: MPI initialised on first use when launched with several processes."""
    if _state["initialized"]:
        return _state["comm"]
    if not force and _comm_module.launched_size() <= 1 and "mpi4py.MPI" not in sys.modules:
        _state["initialized"] = True
        return None
    mpi = _comm_module.import_mpi()
    c = _comm_module.Comm(mpi)
    _state["initialized"] = True
    if c.size <= 1:
        return None
    _state["comm"] = c
    _set_threads(c)
    _install_failure_handlers(c)
    return c


def _set_threads(c):
    # each process of a host takes an equal share of its cores (the kernels' thread policy)
    from fastnn.kernels import threads
    cores = threads._default_threads()
    if os.environ.get("FASTNN_NUM_THREADS") or threads._state["n"] not in (None, cores):
        return      # the user's choice (environment, or set_num_threads before initialize)
    threads.set_num_threads(max(1, cores // max(1, c.local_size)))


def _install_failure_handlers(c):
    """An uncaught exception on one process stops the job at once (the others would wait for
    it in the next collective); a launcher's SIGTERM (another process died) says why."""
    previous = sys.excepthook

    def excepthook(kind, value, tb):
        previous(kind, value, tb)
        if not issubclass(kind, KeyboardInterrupt):
            c.fail(f"stopped on an uncaught {kind.__name__}: {value}"
                   f"{' (in ' + c.busy + (', ' + c.where if c.where else '') + ')' if c.busy else ''}")
        c.comm.Abort(1)
        os._exit(1)

    sys.excepthook = excepthook

    def at_exit():
        # sys.exit() or the end of the script in the middle of a data-parallel call: the others
        # would wait for this process in their next collective
        if c.busy:
            c.fail(f"is exiting in the middle of {c.busy}"
                   f"{' (' + c.where + ')' if c.where else ''} while the others go on")

    import atexit
    atexit.register(at_exit)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def on_term(signum, frame):
            sys.stderr.write(f"fastnn.distribution: process {c.rank} of {c.size} stopped by the launcher "
                             f"(SIGTERM): another process of the job has ended abnormally; see its "
                             f"error above.\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        try:
            signal.signal(signal.SIGTERM, on_term)
        except ValueError:   # not the main thread
            pass


def _comm():
    return _start()


def process_count() -> int:
    """The number of processes in the job (1 when not started by an MPI launcher)."""
    c = _start()
    return 1 if c is None else c.size


def process_index() -> int:
    """This process's index in the job, 0 .. process_count() - 1 (0 writes files)."""
    c = _start()
    return 0 if c is None else c.rank


def list_devices(device_type=None):
    """The job's devices, one CPU per process: ["cpu:0", "cpu:1", ...] (global, as Keras)."""
    if device_type is not None and str(device_type).lower() != "cpu":
        raise ValueError(f"list_devices: fastnn runs on CPUs only; received device_type={device_type!r} "
                         f"(use 'cpu' or None).")
    return [f"cpu:{i}" for i in range(process_count())]


def get_device_count(device_type=None):
    """The number of devices list_devices(device_type) returns."""
    return len(list_devices(device_type))


# ------------------------------------------------------------------------------ Keras classes
class DeviceMesh:
    """A cluster of devices for distributed computation (Keras's DeviceMesh): shape, axis names,
    devices (default: list_devices())."""

    def __init__(self, shape, axis_names, devices=None):
        if not shape or not axis_names:
            raise ValueError(f"DeviceMesh: shape and axis_names cannot be empty; received shape={shape}, "
                             f"axis_names={axis_names}.")
        if len(shape) != len(axis_names):
            raise ValueError(f"DeviceMesh: shape and axis_names must have the same length; received "
                             f"shape={shape}, axis_names={axis_names}.")
        devices = np.array(list_devices() if devices is None else devices)
        if int(np.prod(shape)) != devices.size:
            raise ValueError(f"DeviceMesh: shape {tuple(shape)} does not match the {devices.size} devices "
                             f"{devices.tolist()}.")
        self._shape = tuple(shape)
        self._axis_names = list(axis_names)
        self._devices = devices.reshape(shape)

    @property
    def shape(self):
        return self._shape

    @property
    def axis_names(self):
        return self._axis_names

    @property
    def devices(self):
        return self._devices

    def __repr__(self):
        return f"<DeviceMesh shape={self.shape}, axis_names={self.axis_names}>"


class Distribution:
    """Base class of the distributions (Keras's): a device mesh and a scope."""

    def __init__(self, device_mesh, batch_dim_name=None, auto_shard_dataset=True):
        self._device_mesh = device_mesh
        self._batch_dim_name = batch_dim_name
        self._auto_shard_dataset = auto_shard_dataset

    @property
    def device_mesh(self):
        return self._device_mesh

    @property
    def batch_dim_name(self):
        return self._batch_dim_name

    @property
    def auto_shard_dataset(self):
        return self._auto_shard_dataset

    def scope(self):
        """Context manager making this the current distribution (as Keras)."""
        import contextlib

        @contextlib.contextmanager
        def _scope():
            original = distribution()
            set_distribution(self)
            try:
                yield
            finally:
                set_distribution(original)
        return _scope()

    def __repr__(self):
        return f"<{type(self).__name__} device_mesh={self.device_mesh}>"


class DataParallel(Distribution):
    """Data parallelism: every process holds the whole model and takes a share of each batch.

    device_mesh (a 1-D DeviceMesh) or devices (a list from list_devices()) may name the
    devices; by default all of the job's. fastnn runs one replica per process, so the mesh must
    hold every process's device. auto_shard_dataset=True: every process passes the same full
    dataset to fit/evaluate/predict and fastnn splits each batch (False, data already sharded
    per process, is not supported yet).
    """

    def __init__(self, device_mesh=None, devices=None, auto_shard_dataset=True):
        if device_mesh is not None:
            if not isinstance(device_mesh, DeviceMesh):
                raise ValueError(f"DataParallel: device_mesh must be a DeviceMesh; received "
                                 f"{type(device_mesh).__name__}.")
            if device_mesh.devices.ndim != 1:
                warnings.warn(f"DataParallel: expected a 1-D mesh; received shape {device_mesh.shape}. "
                              f"The first axis is the data-parallel one.", stacklevel=2)
            mesh, name = device_mesh, device_mesh.axis_names[0]
        else:
            devs = np.array(list_devices() if not devices else devices)
            mesh, name = DeviceMesh(devs.shape, [DEFAULT_BATCH_DIM_NAME], devs), DEFAULT_BATCH_DIM_NAME
        if not auto_shard_dataset:
            raise NotImplementedError(
                "DataParallel: auto_shard_dataset=False (each process passing its own shard) is not "
                "supported by fastnn yet; pass the same full dataset on every process and fastnn splits "
                "each batch.")
        super().__init__(mesh, name, auto_shard_dataset)
        n = process_count()
        if mesh.devices.size != n:
            raise ValueError(f"DataParallel: fastnn runs one replica per process; the mesh has "
                             f"{mesh.devices.size} devices but the job has {n} process(es) "
                             f"(list_devices() = {list_devices()}).")
        self._num_process = n
        self._process_id = process_index()
        self._is_multi_process = n > 1

    @property
    def num_model_replicas(self):
        return int(self.device_mesh.devices.size)


def distribution():
    """The current global distribution (None if none was set)."""
    return _state["distribution"]


def set_distribution(value):
    """Set the global distribution (a DataParallel, or None for one process's plain training)."""
    if value is not None and not isinstance(value, Distribution):
        raise TypeError(f"set_distribution: expected a fastnn.distribution.DataParallel or None; received "
                        f"{type(value).__name__}.")
    _state["distribution"] = value


# ------------------------------------------------------------------------------ for the trainer
def _active_comm():
    """The job's Comm when a DataParallel distribution over several processes is set, else None."""
    d = _state["distribution"]
    if not isinstance(d, DataParallel) or not d._is_multi_process:
        return None
    return _start()


def writes_files() -> bool:
    """False on the processes other than 0 of a data-parallel job: only process 0 saves files."""
    c = _active_comm()
    return c is None or c.rank == 0


def replica_for(model):
    """The object through which the trainer of `model` takes part in a data-parallel job (see
    fastnn.distribution.replica.Replica), or None for plain one-process training."""
    c = _active_comm()
    if c is None:
        return None
    from fastnn.distribution.replica import Replica
    return Replica(c, model)
