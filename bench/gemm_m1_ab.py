# M1 training step / inference batch with dense.GEMM "auto" vs "blas", alternated in one process.
import sys, time, numpy as np
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fastnn
from fastnn.kernels import dense as D
from peers import _keras_like_model, _data, MODELS, INFER_BATCH
model = _keras_like_model(fastnn, "M1")
bt = MODELS["M1"]["batch"]; bi = INFER_BATCH
x, y = _data("M1", max(bt, bi), 8)
for _ in range(5):
    model.train_on_batch(x[:bt], y[:bt]); model.predict_on_batch(x[:bi])
T = {("train", m): [] for m in ("auto", "blas")}; T.update({("infer", m): [] for m in ("auto", "blas")})
for r in range(200):
    for mode in (("auto", "blas") if r % 2 == 0 else ("blas", "auto")):
        D.GEMM = mode
        i = r % 8
        s = time.perf_counter(); model.train_on_batch(x[i*bt:(i+1)*bt], y[i*bt:(i+1)*bt]); T[("train", mode)].append(time.perf_counter() - s)
        s = time.perf_counter(); model.predict_on_batch(x[i*bi:(i+1)*bi]); T[("infer", mode)].append(time.perf_counter() - s)
print("batch train", bt, "infer", bi)
for kind in ("train", "infer"):
    a, b = T[(kind, "auto")], T[(kind, "blas")]
    print(f"{kind}: blas best {min(b)*1e3:.2f} ms med {np.median(b)*1e3:.2f} | auto best {min(a)*1e3:.2f} med {np.median(a)*1e3:.2f} | speedup best x{min(b)/min(a):.3f} med x{np.median(b)/np.median(a):.3f}")
for kind in ("train", "infer"):
    for mode in ("blas", "auto"):
        print(kind, mode, " ".join(f"p{q}={np.percentile(T[(kind, mode)], q)*1e3:.2f}" for q in (10, 25, 50, 75, 90)))
