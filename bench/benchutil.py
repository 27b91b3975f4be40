"""Helpers shared by the kernel benchmarks (importable as `benchutil`: pyproject puts bench/ on
pytest's pythonpath, since --import-mode=importlib does not let bench files import conftest)."""


def record(benchmark, *, flops=None, nbytes=None):
    """Attach GFLOP/s and/or GB/s (from the benchmark's median time) to extra_info."""
    stats = getattr(benchmark.stats, "stats", benchmark.stats)
    if stats is None:  # --benchmark-disable: the body ran once, untimed
        return
    t = stats.median
    if flops is not None:
        benchmark.extra_info["GFLOP/s"] = round(flops / t / 1e9, 2)
    if nbytes is not None:
        benchmark.extra_info["GB/s"] = round(nbytes / t / 1e9, 2)
