"""Turn a pytest-benchmark JSON of bench/ into the markdown table of the README.

    pytest bench/ --benchmark-group-by=group --benchmark-json=bench.json
    python bench/summarize.py bench.json > docs/kernels-bench.md

Each group holds the NumPy reference, the fastnn kernel and a ceiling (the bare GEMM of the same
shape, or np.copyto of the same bytes). The table gives the minimum times and two ratios:
speed-up = reference / kernel, and of-ceiling = ceiling time / kernel time (1.0 = as fast as the
GEMM or the copy; conv's target "<= 1.43x the GEMM" is of-ceiling >= 0.70).
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

# min, not median: on a shared 2-core machine the medians of multi-threaded runs are bimodal
# (a second thread waits for a core another process holds); the minimum is the kernel's own cost.
STAT = "min"

ROLES = {"reference": "reference", "kernel": "kernel", "ceiling": "ceiling", "copy": "ceiling",
         "gemm": "ceiling", "copy_ceiling": "ceiling"}


def role_of(bench):
    parts = bench["name"].split("[", 1)[-1].rstrip("]").split("-")
    for p in parts:
        if p in ROLES:
            return ROLES[p]
    return None


def main(path):
    data = json.load(open(path))
    groups = defaultdict(dict)
    extra = {}
    for b in data["benchmarks"]:
        role = role_of(b)
        if role is None:
            continue
        groups[b["group"] or b["name"]][role] = b["stats"][STAT]
        if role == "kernel":
            extra[b["group"] or b["name"]] = b.get("extra_info", {})
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {}).get("brand_raw", "?")
    print(f"Kernel benchmarks, {data.get('datetime', '')[:10]}, {cpu}, "
          f"{info.get('cpu', {}).get('count', '?')} cores. Best-of-rounds (min) times in ms.\n")
    print("| group | reference | kernel | ceiling | speed-up vs reference | of ceiling | throughput |")
    print("|---|---|---|---|---|---|---|")
    for g in sorted(groups):
        r = groups[g]
        ref, ker, ceil = r.get("reference"), r.get("kernel"), r.get("ceiling")
        fmt = lambda t: f"{t * 1e3:.2f}" if t is not None else "-"
        up = f"{ref / ker:.1f}x" if ref and ker else "-"
        of = f"{ceil / ker:.2f}" if ceil and ker else "-"
        thr = ", ".join(f"{k} {v}" for k, v in extra.get(g, {}).items() if k in ("GB/s", "GFLOP/s"))
        print(f"| {g} | {fmt(ref)} | {fmt(ker)} | {fmt(ceil)} | {up} | {of} | {thr} |")


if __name__ == "__main__":
    main(sys.argv[1])
