# dense / dense_backward (two threads, pinned) with dense.GEMM "auto" vs "blas", interleaved.
import time, numpy as np
from fastnn.kernels import dense as D, conv
rng = np.random.default_rng(0)
cases = []
for M in (128, 256):
    for K in (784, 1024):
        x = rng.standard_normal((M, K), dtype=np.float32); w = rng.standard_normal((K, 1024), dtype=np.float32)
        b = np.zeros(1024, np.float32); out = np.empty((M, 1024), np.float32)
        cases.append((f"fwd {M}x{K}x1024", 2.0*M*K*1024, lambda x=x, w=w, b=b, out=out: D.dense(x, w, b, "relu", out=out)))
for K in (784, 1024):
    x = rng.standard_normal((128, K), dtype=np.float32); w = rng.standard_normal((K, 1024), dtype=np.float32)
    dy = rng.standard_normal((128, 1024), dtype=np.float32)
    dx = np.empty_like(x); dw = np.empty_like(w); db = np.empty(1024, np.float32)
    cases.append((f"bwd 128x{K}x1024", 4.0*128*K*1024, lambda x=x, w=w, dy=dy, dx=dx, dw=dw, db=db: D.dense_backward(x, w, dy, dx=dx, dw=dw, db=db)))
with conv.blas_pinned():
    for name, fl, f in cases:
        T = {"auto": [], "blas": []}
        for r in range(200):
            for mode in (("auto", "blas") if r % 2 else ("blas", "auto")):
                D.GEMM = mode; s = time.perf_counter(); f(); T[mode].append(time.perf_counter() - s)
        a, b = T["auto"], T["blas"]
        print(f"{name:20s} blas {fl/min(b)/1e9:6.1f}/{fl/np.median(b)/1e9:6.1f} GF/s  auto {fl/min(a)/1e9:6.1f}/{fl/np.median(a)/1e9:6.1f}  x{np.median(b)/np.median(a):.3f} (best x{min(b)/min(a):.3f})")
