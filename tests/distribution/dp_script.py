"""A training script run by tests/distribution/test_mpi.py, alone and under `mpiexec -n N`.

    python dp_script.py OUT_DIR [scenario]

Every process writes OUT_DIR/rank<i>.npz (final weights, predictions, evaluate results) and
OUT_DIR/rank<i>.json (history); the scenarios exercise the failure paths.
"""
import json
import os
import sys

import numpy as np

import fastnn as keras
from fastnn import distribution


def convnet():
    L = keras.layers
    model = keras.Sequential([
        keras.Input((12, 12, 1)),
        L.Conv2D(8, 3, activation="relu"),
        L.BatchNormalization(),
        L.MaxPooling2D(2),
        L.Conv2D(8, 3, padding="same", use_bias=False),
        L.BatchNormalization(),
        L.ReLU(),
        L.Flatten(),
        L.Dropout(0.3),
        L.Dense(16, activation="relu", kernel_regularizer="l2"),
        L.Dense(4, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(3e-3), loss="categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.AUC(name="auc")])
    return model


def data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12, 12, 1)).astype(np.float32)
    labels = (x[:, 3:9, 3:9, 0].mean(axis=(1, 2)) > 0).astype(int) + 2 * (x[:, :6, :, 0].mean(axis=(1, 2)) > 0)
    return x, np.eye(4, dtype=np.float32)[labels]


def recurrent():
    """Masked token sequences (Embedding(mask_zero)) through LSTM and GRU layers with dropout
    and recurrent dropout: a per-step output whose loss and metric average the unmasked steps
    of the global batch, and a pooled output."""
    L = keras.layers
    i = keras.Input((9,), dtype="int32")
    e = L.Embedding(30, 6, mask_zero=True)(i)
    s = L.LSTM(8, return_sequences=True, dropout=0.2, recurrent_dropout=0.3)(e)
    tags = L.TimeDistributed(L.Dense(3, activation="softmax"), name="tags")(s)
    g = L.Bidirectional(L.GRU(4, dropout=0.25))(s)
    model = keras.Model(i, [tags, L.Dense(1, name="score")(g)])
    model.compile(keras.optimizers.Adam(3e-3), loss=["categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], ["mae"]])
    return model


def sequences(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 30, (n, 9)).astype(np.int32)
    for r, k in enumerate(rng.integers(0, 8, n)):
        x[r, :k] = 0                     # pre-padding, 0 to 7 steps
    tags = np.eye(3, dtype=np.float32)[x % 3]
    return x, [tags, (x % 5).mean(axis=1, keepdims=True).astype(np.float32)]


def main_recurrent(out, rank):
    model = recurrent()
    x, y = sequences(75, 0)          # 75 = 4 batches of 16 + 11, with a 0.15 validation split
    hist = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.15, verbose=0)
    xt, yt = sequences(21, 1)
    ev = model.evaluate(xt, yt, batch_size=8, verbose=0, return_dict=True)
    pred = model.predict(xt, batch_size=8, verbose=0)[0]
    np.savez(os.path.join(out, f"rank{rank}.npz"), pred=pred, *model.get_weights())
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
                   "evaluate": {k: float(v) for k, v in ev.items()},
                   "processes": distribution.process_count()}, f)


def main():
    out = sys.argv[1]
    scenario = sys.argv[2] if len(sys.argv) > 2 else "train"
    distribution.initialize()
    distribution.set_distribution(distribution.DataParallel())
    rank = distribution.process_index()
    keras.utils.set_random_seed(7)
    if scenario == "recurrent":
        return main_recurrent(out, rank)
    model = convnet()
    if scenario == "mismatch" and rank == 1:
        model = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(4, activation="softmax", name="other_dense")])
        model.compile("adam", loss="categorical_crossentropy")
    x, y = data(203, 0)              # 203 = 6 batches of 32 + 11, with a 0.15 validation split
    callbacks = [keras.callbacks.CSVLogger(os.path.join(out, "log.csv")),
                 keras.callbacks.ModelCheckpoint(os.path.join(out, "ckpt.weights.h5"), save_weights_only=True)]
    if scenario in ("dead", "kill", "exit", "raise"):
        class Die(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if rank == 1 and batch == 2:         # mid-epoch
                    if scenario == "dead":
                        os._exit(3)                  # without a word
                    if scenario == "kill":
                        import signal
                        os.kill(os.getpid(), signal.SIGKILL)
                    if scenario == "exit":
                        sys.exit(0)
                    raise RuntimeError("a bug on process 1")
        callbacks.append(Die())
    if scenario == "hang":
        class Hang(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if rank == 1 and batch == 2:
                    import time
                    time.sleep(600)
        callbacks.append(Hang())
    if scenario == "train":
        class Disagree(keras.callbacks.Callback):
            # a decision only process 1 takes: process 0's (go on, keep the rate) must win
            def on_epoch_end(self, epoch, logs=None):
                if rank == 1:
                    self.model.stop_training = True
                    self.model.optimizer.learning_rate = 0.5
        callbacks.append(Disagree())
    hist = model.fit(x, y, batch_size=32, epochs=2, validation_split=0.15, verbose=2 if rank == 0 else 0,
                     callbacks=callbacks)
    xt, yt = data(37, 1)
    # a batch of 1 row: the processes without a row run a stand-in for the collectives only
    one = model.train_on_batch(xt[:1], yt[:1], return_dict=True)
    ev = model.evaluate(xt, yt, batch_size=16, verbose=0, return_dict=True)
    ev.update({"one_row_" + k: v for k, v in model.evaluate(xt[:1], yt[:1], verbose=0, return_dict=True).items()})
    ev.update({"train_on_batch_" + k: v for k, v in one.items()})
    pred = model.predict(xt, batch_size=8, verbose=0)
    model.save(os.path.join(out, "model.keras"))
    model.save_weights(os.path.join(out, f"from_process{rank}.weights.h5"))   # only process 0 writes
    np.savez(os.path.join(out, f"rank{rank}.npz"), pred=pred, *model.get_weights())
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
                   "evaluate": {k: float(v) for k, v in ev.items()},
                   "processes": distribution.process_count(),
                   "learning_rate": float(model.optimizer.learning_rate),
                   "devices": distribution.list_devices(),
                   "threads": keras.get_num_threads()}, f)


if __name__ == "__main__":
    main()
