"""The `fastnn` command: `info` (versions, kernels, threads), `train` (a model on MNIST or the
embedded digits, with learning curves) and `experiment NAME` (the study-notes experiments).

    fastnn info
    fastnn train                               # the Keras MNIST convnet, 12 epochs
    fastnn train --model mlp --dataset digits --epochs 30
    fastnn experiment optimizers --tiny --out /tmp/x
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time

import numpy as np

from fastnn.experiments import NAMES as EXPERIMENTS  # the one list of experiments

DATASETS = ("mnist", "fashion_mnist", "digits")


# --- architectures ----------------------------------------------------------------------------
# name -> builder(input_shape (H, W, C), num_classes) -> uncompiled Sequential. Add an
# architecture with @register("name").
MODELS = {}


def register(name):
    def deco(fn):
        MODELS[name] = fn
        return fn
    return deco


@register("mlp")
def mlp(input_shape, num_classes):
    """Flatten, Dense 256 relu, Dropout 0.2, Dense 128 relu, Dense num_classes softmax."""
    from fastnn import layers, models
    return models.Sequential([
        layers.Input(input_shape), layers.Flatten(),
        layers.Dense(256, activation="relu"), layers.Dropout(0.2),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register("mnist_convnet")
def mnist_convnet(input_shape, num_classes):
    """The Keras example "Simple MNIST convnet" (needs images of at least 14x14)."""
    from fastnn import layers, models
    return models.Sequential([
        layers.Input(input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register("digits_convnet")
def digits_convnet(input_shape, num_classes):
    """The MNIST convnet sized for 8x8 images: 'same' convolutions, so two poolings leave 2x2."""
    from fastnn import layers, models
    return models.Sequential([
        layers.Input(input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), padding="same", activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), padding="same", activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register("lstm")
def lstm(input_shape, num_classes):
    """Keras's MNIST-rows LSTM (bench/peers.py's M4): each image row is a time step,
    LSTM(128), Dense num_classes softmax."""
    from fastnn import layers, models
    return models.Sequential([
        layers.Input(input_shape), layers.Reshape(tuple(input_shape[:2])),
        layers.LSTM(128),
        layers.Dense(num_classes, activation="softmax"),
    ])


@register("small_vgg")
def small_vgg(input_shape, num_classes):
    """[Conv 32 3x3 same, BN, ReLU]x2, MaxPool, [Conv 64 3x3 same, BN, ReLU]x2, MaxPool,
    Flatten, Dense 256 relu, Dense num_classes softmax."""
    from fastnn import layers, models
    stack = [layers.Input(input_shape)]
    for filters in (32, 64):
        for _ in range(2):
            stack += [layers.Conv2D(filters, (3, 3), padding="same", use_bias=False),
                      layers.BatchNormalization(), layers.Activation("relu")]
        stack.append(layers.MaxPooling2D((2, 2)))
    stack += [layers.Flatten(), layers.Dense(256, activation="relu"),
              layers.Dense(num_classes, activation="softmax")]
    return models.Sequential(stack)


# --- data -------------------------------------------------------------------------------------

def load_dataset(name):
    """(x_train, y_train), (x_test, y_test) as float32 NHWC in [0, 1] and int labels."""
    from fastnn import datasets
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    (x_train, y_train), (x_test, y_test) = getattr(datasets, name).load_data()
    scale = datasets.digits.MAX_VALUE if name == "digits" else 255.0
    prep = lambda x: (x.astype(np.float32) / np.float32(scale))[..., None]  # noqa: E731
    return (prep(x_train), y_train.astype(np.int64)), (prep(x_test), y_test.astype(np.int64))


def default_dataset():
    """MNIST when its files are on this machine (FASTNN_DATA or the cache), else digits."""
    from fastnn.datasets import mnist
    return "mnist" if mnist.find() is not None else "digits"


# --- commands ---------------------------------------------------------------------------------

def _kernel_modules():
    """(compiled Cython modules, Numba modules) installed in fastnn._kernels."""
    import fastnn._kernels as k
    compiled, numba_mods = [], []
    for m in sorted(pkgutil.iter_modules(k.__path__), key=lambda m: m.name):
        spec = importlib.util.find_spec(f"fastnn._kernels.{m.name}")
        origin = (spec.origin or "") if spec else ""
        (numba_mods if origin.endswith(".py") else compiled).append(m.name)
    return compiled, numba_mods


def cmd_info(args):
    import numba

    import fastnn
    from fastnn.kernels import threads
    print(f"fastnn   {fastnn.__version__}  ({os.path.dirname(fastnn.__file__)})")
    print(f"python   {platform.python_version()} ({platform.python_implementation()}, {platform.machine()})")
    print(f"numpy    {np.__version__}")
    print(f"numba    {numba.__version__}")
    compiled, numba_mods = _kernel_modules()
    print(f"compiled kernels (Cython + OpenMP): {', '.join(compiled) or 'none'}")
    print(f"Numba kernels:                      {', '.join(numba_mods) or 'none'}")
    t = threads.info()
    print(f"threads  fastnn policy {t['fastnn']}, OpenMP {t['openmp']}, Numba {t['numba']}, "
          f"BLAS {', '.join(str(b.get('num_threads')) for b in t.get('blas', [])) or '?'}")
    for b in t.get("blas", []):
        print(f"BLAS     {b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
              f"{b.get('num_threads')} threads)  {b.get('filepath')}")
    if not t.get("blas"):
        print("BLAS     none found by threadpoolctl")
    from fastnn.kernels import isa

    fl = isa.info()
    print(f"ISA      flavour {fl['flavour']} (this CPU runs: {', '.join(fl['supported'])}; "
          f"FASTNN_ISA=avx512|avx2|portable picks one)")
    for name, body in fl["kernels"].items():
        print(f"         {name:<52} {body}")
    return 0


def cmd_train(args):
    import fastnn
    from fastnn import distribution, utils

    # under mpiexec: data parallel over the job's processes (alone: one process, as before);
    # process 0 prints and writes the files
    distribution.initialize()
    processes = distribution.process_count()
    if processes > 1:
        distribution.set_distribution(distribution.DataParallel())
    lead = distribution.process_index() == 0
    say = print if lead else (lambda *a, **k: None)

    dataset = args.dataset or default_dataset()
    (x_train, y_train), (x_test, y_test) = load_dataset(dataset)
    small = x_train.shape[1] < 14
    model_name = args.model or ("digits_convnet" if small else "mnist_convnet")
    if model_name not in MODELS:
        raise SystemExit(f"fastnn train: unknown --model {model_name!r}; choose one of {', '.join(MODELS)}.")
    if model_name == "mnist_convnet" and small:
        raise SystemExit("fastnn train: mnist_convnet needs 28x28 images; use --model digits_convnet "
                         "for the 8x8 digits.")
    # the digits set is small: more epochs for the same number of steps
    epochs = args.epochs if args.epochs is not None else (
        40 if dataset == "digits" else 10 if model_name == "lstm" else 12)
    if args.seed is not None:
        utils.set_random_seed(args.seed)
    num_classes = int(y_train.max()) + 1
    y_train_1h = utils.to_categorical(y_train, num_classes)
    y_test_1h = utils.to_categorical(y_test, num_classes)

    model = MODELS[model_name](x_train.shape[1:], num_classes)
    optimizer = fastnn.optimizers.get(args.optimizer)
    if args.lr is not None:
        optimizer.learning_rate = args.lr
    model.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    say(f"fastnn train: {model_name} on {dataset} ({len(x_train)} train / {len(x_test)} test, "
          f"{x_train.shape[1]}x{x_train.shape[2]}), {epochs} epochs, batch {args.batch_size}, "
          f"{args.optimizer}" + (f" lr={args.lr}" if args.lr is not None else "")
          + f", {fastnn.kernels.get_num_threads()} threads"
          + (f" x {processes} processes (data parallel)" if processes > 1 else ""))
    t0 = time.perf_counter()
    history = model.fit(x_train, y_train_1h, batch_size=args.batch_size, epochs=epochs,
                        validation_split=0.1, verbose=1)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    score = model.evaluate(x_test, y_test_1h, verbose=0)
    eval_s = time.perf_counter() - t0
    test_loss, test_acc = (float(score[0]), float(score[1])) if np.ndim(score) else (float(score), float("nan"))
    n_fit = len(x_train) - int(len(x_train) * 0.1)
    samples_s = n_fit * epochs / fit_s

    if lead:
        os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, f"{model_name}_{dataset}_learning_curves.png")
    summary = {"model": model_name, "dataset": dataset, "epochs": epochs, "batch_size": args.batch_size,
               "optimizer": args.optimizer, "lr": args.lr, "seed": args.seed,
               "test_loss": test_loss, "test_accuracy": test_acc, "fit_seconds": fit_s,
               "evaluate_seconds": eval_s, "train_samples_per_second": samples_s,
               "threads": fastnn.kernels.get_num_threads(), "processes": processes,
               "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    if not lead:
        return 0
    with open(os.path.join(args.out, f"{model_name}_{dataset}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    try:
        utils.plot_history(history, ["loss", "accuracy"], path=png,
                           title=f"fastnn {model_name} on {dataset}: test accuracy {test_acc:.4f}")
        where = png
    except ImportError:
        where = "(not drawn: matplotlib is not installed)"
    say(f"test loss {test_loss:.4f}, test accuracy {test_acc:.4f}")
    say(f"training {fit_s:.1f} s ({samples_s:.0f} samples/s), evaluation {eval_s:.1f} s")
    say(f"learning curves: {where}")
    return 0


def cmd_experiment(args):
    if args.name not in EXPERIMENTS:
        raise SystemExit(f"fastnn experiment: unknown experiment {args.name!r}; choose one of "
                         f"{', '.join(EXPERIMENTS)}.")
    module = importlib.import_module(f"fastnn.experiments.{args.name}")
    t0 = time.perf_counter()
    result = module.run(size="tiny" if args.tiny else "full", out=args.out)
    print(f"experiment {args.name} ({'tiny' if args.tiny else 'full'}) took "
          f"{time.perf_counter() - t0:.1f} s: wrote {result['png']} and {result['json']}")
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="fastnn", description="fastnn: Keras-compatible deep learning on the CPU.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, kernel modules, thread counts and the BLAS in use")
    t = sub.add_parser("train", help="train a model (default: the Keras MNIST convnet) and plot its learning curves")
    t.add_argument("--model", choices=sorted(MODELS), default=None,
                   help="architecture (default: mnist_convnet, or digits_convnet on the 8x8 digits)")
    t.add_argument("--dataset", choices=DATASETS, default=None,
                   help="default: mnist when its files are found (FASTNN_DATA or the cache), else digits")
    t.add_argument("--epochs", type=int, default=None, help="default 12 (lstm 10; 40 on digits)")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--optimizer", default="adam")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--out", default="fastnn-out", help="folder for the PNG and JSON (default ./fastnn-out)")
    e = sub.add_parser("experiment", help="run one of the study-notes experiments (PNG + JSON)")
    e.add_argument("name", help=", ".join(EXPERIMENTS))
    e.add_argument("--tiny", action="store_true", help="a seconds-long version (for tests)")
    e.add_argument("--out", default="fastnn-out")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return {"info": cmd_info, "train": cmd_train, "experiment": cmd_experiment}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
