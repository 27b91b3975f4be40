#!/usr/bin/env bash
# The compiled kernels (kernels/*.h and the C of the .pyx/.pxd files) under AddressSanitizer and
# UndefinedBehaviorSanitizer: builds fastnn with -fsanitize=address,undefined into its own venv
# (.asan-venv, build dir build/asan) and runs the kernel tests and the fuzzers once per
# instruction-set flavour this CPU has (FASTNN_ISA=avx512|avx2|portable). Any sanitizer report
# aborts the test process, so a finding fails the run.
#
#   bash bench/asan.sh                     # every flavour, tests/kernels
#   bash bench/asan.sh tests/kernels/test_fuzz_pool.py      # other pytest arguments
#   ASAN_FLAVOURS="avx2" bash bench/asan.sh                 # some flavours only
#   FASTNN_HYPOTHESIS_EXAMPLES=400 bash bench/asan.sh       # longer fuzzing
#
# CPython and NumPy are not instrumented: libasan is preloaded (it must come first), leak
# detection is off (the interpreter keeps its allocations to the end), and huge allocations
# return NULL (MemoryError) instead of aborting. Takes ~10 minutes to build and ~5 per flavour
# on the 2-core machine; not part of .ci/run for that reason (docs/internals.md).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ASAN_VENV:-.asan-venv}"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
. "$VENV/bin/activate"
python -m pip install -q -Cbuild-dir=build/asan \
    -Ccmake.define.CMAKE_C_FLAGS="$SAN" \
    -Ccmake.define.CMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
    ".[test]"
built=$(date +%s)
echo "asan.sh: build + install $((built - start)) s"

export LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
# reports go to files (pytest captures the tests' stderr, and an aborted process loses it);
# they are printed below when a run fails
LOGS="$PWD/build/asan/reports"
rm -rf "$LOGS" && mkdir -p "$LOGS"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:symbolize=1:log_path=$LOGS/asan"
# UBSan (combined with ASan, GCC) ignores its log_path and writes to stderr, so pytest runs with
# --capture=sys (its fd 2 is not captured: a report reaches this script's output), and it aborts
# (SIGABRT) so pytest's faulthandler prints the Python stack of the test that ran into it
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$LOGS/ubsan"
# the oracles of other tests (Keras) are not installed here: this run is about memory safety
unset FASTNN_REQUIRE_ORACLES

# the build really is instrumented: a compiled kernel module links the sanitizer runtimes
so=$(cd / && python -c "import fastnn._kernels.pool as m; print(m.__file__)")   # (not ./fastnn)
ldd "$so" | grep -q libasan || { echo "asan.sh: $so is not linked against libasan" >&2; exit 1; }

flavours="${ASAN_FLAVOURS:-$(cd / && python -c 'from fastnn.kernels import isa; print(" ".join(isa.supported()))')}"
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(tests/kernels)
status=0
for f in $flavours; do
    t0=$(date +%s)
    echo "asan.sh: FASTNN_ISA=$f pytest ${args[*]}"
    FASTNN_ISA="$f" pytest -q -p no:cacheprovider --capture=sys "${args[@]}" || status=$?
    echo "asan.sh: flavour $f: exit $status, $(( $(date +%s) - t0 )) s"
    if [ -n "$(ls -A "$LOGS")" ]; then
        echo "asan.sh: sanitizer reports ($LOGS):"
        cat "$LOGS"/*
        status=1
    fi
    [ $status -eq 0 ] || break
done
echo "asan.sh: total $(( $(date +%s) - start )) s, exit $status"
exit $status
