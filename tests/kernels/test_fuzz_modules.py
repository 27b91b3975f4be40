"""Every kernel topic module (fastnn.kernels.TOPICS) has a fuzzer, tests/kernels/test_fuzz_<topic>.py,
whose test_every_public_function_is_fuzzed compares its calls with the module's __all__ (gemm's
matmul is fuzzed with the dense kernels, whose fuzzer also guards gemm's __all__)."""
import pathlib

import fastnn.kernels as kernels

HERE = pathlib.Path(__file__).parent
FUZZER = {"gemm": "dense"}        # topic -> the fuzz module that covers it


def test_every_kernel_module_has_a_fuzzer():
    missing = []
    for topic in kernels.TOPICS:
        path = HERE / f"test_fuzz_{FUZZER.get(topic, topic)}.py"
        if not path.exists() or "def test_every_public_function_is_fuzzed" not in path.read_text():
            missing.append(topic)
    assert not missing, f"kernel modules without a fuzzer and its guard: {missing}"
