# A/B of fastnn.kernels.gemm vs np.matmul on the M1 per-thread blocks, one thread, interleaved.
# usage: python bench/gemm_ab.py VARIANT,KC,MC ...  (GFLOP/s best/median, xN = median ratio)
import time, sys, numpy as np
from fastnn.kernels import gemm, conv
rng = np.random.default_rng(0)
def shapes():
    out = []
    for M in (128, 256):
        for K in (784, 1024):
            x = rng.standard_normal((M, K), dtype=np.float32); w = rng.standard_normal((K, 1024), dtype=np.float32)
            y = np.empty((M, 1024), np.float32)
            out.append((f"fwd {M}x{K}x512", x, w[:, :512], y[:, :512]))
    for Kr in (392, 512):
        x = rng.standard_normal((128, 2*Kr), dtype=np.float32); dy = rng.standard_normal((128, 1024), dtype=np.float32)
        dw = np.empty((2*Kr, 1024), np.float32)
        out.append((f"dW {Kr}x128x1024", x[:, :Kr].T, dy, dw[:Kr]))
    for K in (784, 1024):  # dx: dy (128x1024) @ w[a:b].T, w is (K, 1024): block of 512 rows -> dx[:, a:b]
        dy = rng.standard_normal((128, 1024), dtype=np.float32); w = rng.standard_normal((K, 1024), dtype=np.float32)
        dx = np.empty((128, K), np.float32); K = 800 if K == 784 else K
        out.append((f"dx 128x1024x{K//2}", dy, w[:K//2].T, dx[:, :K//2]))
    return out
configs = [tuple(map(int, c.split(","))) for c in sys.argv[1:]] or [(0,256,392)]
REP = 40
with conv.blas_pinned():
    for name, a, b, c in shapes():
        m, k = a.shape; n = b.shape[1]; fl = 2.0*m*n*k
        ref = a.astype(np.float64) @ b.astype(np.float64)
        for v, kc, mc in configs:
            gemm.matmul(a, b, c, variant=v, kc=kc, mc=mc)
            err = np.abs(c - ref).max() / np.abs(ref).max()
            assert err < 1e-5, (name, err)
        t = {("blas",): []}; 
        for cfg in configs: t[cfg] = []
        for r in range(REP):
            t0 = time.perf_counter(); np.matmul(a, b, out=c); t[("blas",)].append(time.perf_counter()-t0)
            for v, kc, mc in configs:
                t0 = time.perf_counter(); gemm.matmul(a, b, c, variant=v, kc=kc, mc=mc); t[(v,kc,mc)].append(time.perf_counter()-t0)
        bb = min(t[("blas",)]); bm = np.median(t[("blas",)])
        line = f"{name:22s} blas {fl/bb/1e9:6.1f}/{fl/bm/1e9:6.1f}"
        for cfg in configs:
            tb = min(t[cfg]); tm = np.median(t[cfg])
            line += f" | {cfg} {fl/tb/1e9:6.1f}/{fl/tm/1e9:6.1f} x{bm/tm:.2f}"
        print(line, flush=True)
