"""A search run as its own process by the resume and parallel tests.

    python search_script.py DIR PROJECT --max-trials N [--kill-at-fit K] [--workers W] [--log FILE]

Every model fit appends one JSON line {"pid", "values"} to --log before training, so the tests
can count what was trained and by whom. --kill-at-fit K sends SIGKILL to this process in the
middle of its K-th fit (after the first epoch): a `kill -9` while a trial runs.
"""
import argparse
import json
import os
import signal
import time

import numpy as np

import fastnn as keras
import fastnn.tuner as kt


class LoggedMLP(kt.HyperModel):
    def __init__(self, log, kill_at_fit=0, sleep=0.0):
        super().__init__()
        self.log, self.kill_at_fit, self.sleep = log, kill_at_fit, sleep
        self.fits = 0

    def build(self, hp):
        model = keras.Sequential([
            keras.Input((64,)),
            keras.layers.Dense(hp.Int("units", 16, 64, step=16), activation="relu"),
            keras.layers.Dense(10, activation="softmax")])
        model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-3, 3e-2, sampling="log")),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, *args, **kwargs):
        self.fits += 1
        with open(self.log, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "values": hp.values}) + "\n")
        fits, kill_at, sleep = self.fits, self.kill_at_fit, self.sleep

        def on_epoch_end(epoch, logs):
            if sleep:
                time.sleep(sleep)
            if fits == kill_at and epoch == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)]
        return model.fit(*args, **kwargs)


def data():
    rng = np.random.default_rng(0)
    from sklearn.datasets import load_digits
    d = load_digits()
    order = rng.permutation(len(d.target))[:600]
    return (d.data[order] / 16).astype("float32"), d.target[order].astype("int64")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("directory")
    p.add_argument("project")
    p.add_argument("--max-trials", type=int, default=4)
    p.add_argument("--kill-at-fit", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--log", required=True)
    a = p.parse_args()
    x, y = data()
    tuner = kt.RandomSearch(LoggedMLP(a.log, a.kill_at_fit, a.sleep), objective="val_accuracy",
                            max_trials=a.max_trials, seed=a.seed, directory=a.directory, project_name=a.project,
                            workers=a.workers)
    tuner.search(x, y, epochs=a.epochs, batch_size=64, validation_split=0.25, verbose=0)


if __name__ == "__main__":
    main()
