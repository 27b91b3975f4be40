"""CPU time per step of one bench/peers.py model in one framework (all threads counted): a
figure that stays meaningful when the shared machine is loaded and wall-clock ratios are not.

    python bench/peers_cpu.py fastnn M4 train
    python bench/peers_cpu.py keras_jax M5 infer

3 warm-up steps, then the mean over 9 steps of time.process_time() and of wall time.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402


def main(fw, model_name, mode):
    if fw == "keras_jax":
        os.environ["KERAS_BACKEND"] = "jax"
        import keras as K
    else:
        import fastnn as K
    batch = peers._batch(model_name, mode)
    m = peers._keras_like_model(K, model_name)
    x, y = peers._data(model_name, batch, 12)

    def step(i):
        sl = slice(i * batch, (i + 1) * batch)
        return m.train_on_batch(x[sl], y[sl]) if mode == "train" else m.predict_on_batch(x[sl])

    for i in range(3):
        step(i)
    c, w = time.process_time(), time.perf_counter()
    for i in range(3, 12):
        step(i)
    c, w = (time.process_time() - c) / 9, (time.perf_counter() - w) / 9
    print(f"{fw} {model_name} {mode}: cpu {c * 1e3:.1f} ms/step, wall {w * 1e3:.1f} ms/step, "
          f"cpu per sample {c / batch * 1e6:.0f} us")


if __name__ == "__main__":
    main(*sys.argv[1:4])
