"""Progress output (TTY and not), History and the Keras callbacks."""
import csv
import io
import re

import numpy as np
import pytest

from fastnn import callbacks as C
from fastnn import layers as L
from fastnn._progbar import Progbar
from fastnn.models import Sequential


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def _model():
    m = Sequential([L.Input((4,)), L.Dense(6, activation="tanh"), L.Dense(2, activation="softmax")])
    m.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    return m


def _data(rng, n=50):
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]


LINE = re.compile(r"^(\d+)/(\d+) ━+─* \d+s \d+(s|ms|us)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4}"
                  r"( - val_accuracy: \d\.\d{4} - val_loss: \d\.\d{4})?$")


def test_non_tty_output_is_clean_one_line_per_epoch(rng, capsys):
    x, y = _data(rng)
    _model().fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=1)
    out = capsys.readouterr().out
    assert "\b" not in out and "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert lines[0::2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    for line in lines[1::2]:
        assert LINE.match(line), line
        assert line.startswith("3/3 ")


def test_single_epoch_has_no_epoch_line(rng, capsys):
    x, y = _data(rng)
    _model().fit(x, y, epochs=1, verbose="auto")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and LINE.match(lines[0])


def test_verbose_2_format_and_verbose_0_silent(rng, capsys):
    x, y = _data(rng)
    m = _model()
    m.fit(x, y, epochs=2, batch_size=25, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2"
    assert re.match(r"^2/2 - \d+s - \d+(s|ms|us)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4}$", lines[1]), lines[1]
    m.fit(x, y, epochs=2, verbose=0)
    m.evaluate(x, y, verbose=0)
    m.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_tty_output_redraws_with_control_characters():
    out = FakeTTY()
    bar = Progbar(4, stream=out, interval=0)
    for i in range(1, 5):
        bar.update(i, [("loss", 0.5 / i)], finalize=i == 4)
    text = out.getvalue()
    assert "\r" in text and "\x1b[1m" in text and "\x1b[32m" in text and text.endswith("\n")
    assert text.count("\n") == 1
    final = text.split("\r")[-1]
    assert re.search(r"\x1b\[1m4/4\x1b\[0m \x1b\[32m━{20}\x1b\[0m\x1b\[37m\x1b\[0m \x1b\[1m\d+s\x1b\[0m "
                     r"\d+(s|ms|us)/step - loss: 0\.1250", final), repr(final)


def test_progbar_eta_and_small_value_format():
    out = io.StringIO()
    bar = Progbar(10, stream=out, verbose=1)
    bar.update(10, [("loss", 0.0005)])
    assert out.getvalue().rstrip().endswith("loss: 5.0000e-04")


def test_history_and_custom_callback_order(rng):
    x, y = _data(rng)
    events = []

    class Rec(C.Callback):
        def on_train_begin(self, logs=None): events.append("train_begin")
        def on_epoch_begin(self, epoch, logs=None): events.append(f"epoch_begin{epoch}")
        def on_train_batch_end(self, batch, logs=None): events.append(f"batch{batch}")
        def on_epoch_end(self, epoch, logs=None): events.append(f"epoch_end{epoch}:{sorted(logs)}")
        def on_train_end(self, logs=None): events.append("train_end")

    h = _model().fit(x, y, epochs=2, batch_size=25, verbose=0, callbacks=[Rec()], validation_data=(x[:10], y[:10]))
    assert events == ["train_begin", "epoch_begin0", "batch0", "batch1",
                      "epoch_end0:['accuracy', 'loss', 'val_accuracy', 'val_loss']", "epoch_begin1", "batch0",
                      "batch1", "epoch_end1:['accuracy', 'loss', 'val_accuracy', 'val_loss']", "train_end"]
    assert h.epoch == [0, 1]


def test_early_stopping_patience_and_restore(rng):
    x, y = _data(rng)
    m = _model()
    values = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    weights = {}

    class Fake(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(values)
            weights[epoch] = self.model.get_weights()

    es = C.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = m.fit(x, y, epochs=6, verbose=0, callbacks=[Fake(), es])
    assert len(h.history["loss"]) == 4 and es.stopped_epoch == 3 and es.best_epoch == 1
    for a, b in zip(m.get_weights(), weights[1]):
        np.testing.assert_array_equal(a, b)
    assert C.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert C.EarlyStopping(monitor="loss").mode == "min"


def test_early_stopping_baseline_and_start_from_epoch(rng):
    x, y = _data(rng)
    class Fake(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = [0.5, 0.6, 0.7, 0.8, 0.9][epoch]

    # patience 2: a baseline not beaten keeps the wait counter running from the first epoch
    h = _model().fit(x, y, epochs=5, verbose=0, callbacks=[Fake(), C.EarlyStopping(baseline=0.1, patience=2)])
    assert len(h.history["loss"]) == 2
    h = _model().fit(x, y, epochs=5, verbose=0, callbacks=[Fake(), C.EarlyStopping(patience=2)])
    assert len(h.history["loss"]) == 3
    es = C.EarlyStopping(monitor="loss", min_delta=100, patience=0, start_from_epoch=3)
    h = _model().fit(x, y, epochs=6, verbose=0, callbacks=[es])
    assert len(h.history["loss"]) == 5


def test_lr_scheduler_reduce_on_plateau_csv_lambda_terminate(rng, tmp_path):
    x, y = _data(rng)
    m = _model()
    seen = []
    h = m.fit(x, y, epochs=3, verbose=0, callbacks=[
        C.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1)),
        C.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(float(m.optimizer.learning_rate)))])
    np.testing.assert_allclose(seen, [0.1, 0.05, 0.1 / 3])
    np.testing.assert_allclose(h.history["learning_rate"], [0.1, 0.05, 0.1 / 3])
    m.optimizer.learning_rate = 1.0
    rl = C.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0)
    m.fit(x, y, epochs=3, verbose=0, callbacks=[rl])
    assert float(m.optimizer.learning_rate) == pytest.approx(0.25)
    path = tmp_path / "log.csv"
    m.fit(x, y, epochs=2, verbose=0, callbacks=[C.CSVLogger(path)], validation_split=0.2)
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    steps = []

    def poison(batch, logs):   # runs before TerminateOnNaN and shares the logs dict, as in Keras
        steps.append(batch)
        if batch == 2:
            logs["loss"] = float("nan")
    h = m.fit(x, y, epochs=5, batch_size=5, verbose=0,
              callbacks=[C.LambdaCallback(on_train_batch_end=poison), C.TerminateOnNaN()])
    assert steps == [0, 1, 2] and len(h.history["loss"]) == 1


def test_model_checkpoint_best_only(rng, tmp_path):
    x, y = _data(rng)
    m = _model()
    values = iter([0.5, 0.7, 0.4])

    class Fake(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(values)

    pattern = str(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.weights.h5")
    m.fit(x, y, epochs=3, verbose=0,
          callbacks=[Fake(), C.ModelCheckpoint(pattern, save_best_only=True, save_weights_only=True)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-01-0.50.weights.h5", "m-03-0.40.weights.h5"]
    every = str(tmp_path / "full-{epoch}.keras")
    m.fit(x, y, epochs=2, verbose=0, callbacks=[C.ModelCheckpoint(every, monitor="loss")])
    assert (tmp_path / "full-1.keras").exists() and (tmp_path / "full-2.keras").exists()
    with pytest.raises(ValueError, match=".keras"):
        C.ModelCheckpoint(str(tmp_path / "x.h5"))
