#!/usr/bin/env bash
# THE test command: builds forgeattn and runs every test on this machine.
#
#   bash ci/test.sh
#
# Stages (each timed; a failing stage does not stop the later ones, so one run shows
# everything that is broken):
#   deps       missing Debian packages: installed with apt-get when root, otherwise the
#              exact apt-get command is printed and the script exits 1
#   release    configure + build, Release, -j2, GPU backend FG_GPU (default AUTO: CUDA when
#              nvcc is found), in build/release (shared with ci/bench.sh)
#   ctest      every test of the release build (GPU tests exit 77 = skipped without a GPU)
#   sanitize   ASan + UBSan (+ LSan leak checks) build of the whole CPU suite, build/sanitize
#   ctest-san  every test of the sanitizer build
#   cuda       ci/build-cuda.sh (sm_80/sm_90a compile check) when nvcc is present
#   amd        ci/build-amd.sh (gfx908/gfx90a/gfx1030 compile check with Debian's hipcc)
#   bench      smoke run: forgeattn-bench --quick on the best backend present
#   plantime   forgeattn-calibrate --plan-time (CPU context, then as an H100 context would
#              plan): fg_plan_create's median for the 256-request depth-4 tree on this
#              machine. A measurement, not a check: the stage fails only if the tool does.
#
# The last line is `test.sh: N passed, M failed` (read by CI): N and M count the tests
# of both ctest runs one by one, plus one per other stage. Skipped tests are counted
# apart, on the line before.
#
# Environment: FG_BUILD_ROOT (default build), FG_GPU (default AUTO), FG_JOBS (default 2),
# FG_SKIP_DEPS=1 skips the package check (for machines that are not Debian).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
BUILD_ROOT=${FG_BUILD_ROOT:-build}
JOBS=${FG_JOBS:-2}
GPU=${FG_GPU:-AUTO}
LOGS="$BUILD_ROOT/logs"
mkdir -p "$LOGS"
# The CUDA toolkit's usual home, when it is not on PATH (non-login shells, CI).
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi

PASSED=0
FAILED=0
SKIPPED=0
STAGE_NAMES=()
STAGE_RESULTS=()
STAGE_SECS=()
T_START=$(date +%s)

note() { printf '\n=== %s\n' "$*"; }

record() { # name result seconds
    STAGE_NAMES+=("$1"); STAGE_RESULTS+=("$2"); STAGE_SECS+=("$3")
    printf '=== [%s] %s in %ss\n' "$1" "$2" "$3"
}

# run_stage NAME CMD...: runs CMD with its output shown and logged; counts one check.
run_stage() {
    local name=$1; shift
    local t0=$(date +%s) rc=0
    note "[$name] $*"
    "$@" 2>&1 | tee "$LOGS/$name.log" || rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ "$rc" -eq 0 ]; then PASSED=$((PASSED + 1)); record "$name" ok "$dt"
    else FAILED=$((FAILED + 1)); record "$name" "FAILED (exit $rc, log $LOGS/$name.log)" "$dt"; fi
    return "$rc"
}

skip_stage() { # name reason
    note "[$1] skipped: $2"
    record "$1" "skipped: $2" 0
}

# run_ctest NAME BUILD_DIR [ENV=VALUE...]: ctest lists every test it runs; each one counts.
run_ctest() {
    local name=$1 dir=$2; shift 2
    local t0=$(date +%s) rc=0
    note "[$name] ctest --output-on-failure in $dir"
    env "$@" ctest --test-dir "$dir" --output-on-failure -j"$JOBS" --timeout 1800 2>&1 \
        | tee "$LOGS/$name.log" || rc=$?
    local dt=$(( $(date +%s) - t0 ))
    # Progress lines look like "  3/41 Test  #3: forest.basic ....   Passed    0.01 sec".
    local p f s
    p=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$LOGS/$name.log")
    s=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*\*\*\*Skipped' "$LOGS/$name.log")
    f=$(grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: ' "$LOGS/$name.log" \
        | grep -vcE ' Passed|\*\*\*Skipped')
    if [ $((p + f + s)) -eq 0 ]; then
        echo "test.sh: [$name] ctest ran no tests: counted as one failure"
        f=1
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # ctest failed without a failing test line (crash, timeout of ctest itself)
    fi
    PASSED=$((PASSED + p)); FAILED=$((FAILED + f)); SKIPPED=$((SKIPPED + s))
    record "$name" "$p passed, $f failed, $s skipped" "$dt"
}

# ------------------------------------------------------------------ deps
# Each Debian package is tested by what it provides (a command or a header), so images
# that have the tools without the package metadata pass too. hipcc and librocprim-dev are
# for the AMD compile check only.
have_pkg() {
    case "$1" in
        build-essential) command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 &&
                         command -v make >/dev/null 2>&1 ;;
        cmake) command -v cmake >/dev/null 2>&1 ;;
        pkg-config) command -v pkg-config >/dev/null 2>&1 ;;
        libcmocka-dev) [ -f /usr/include/cmocka.h ] ;;
        hipcc) command -v hipcc >/dev/null 2>&1 ;;
        librocprim-dev) [ -f /usr/include/rocprim/rocprim.hpp ] ;;
        *) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' ;;
    esac
}
PKGS="build-essential cmake pkg-config libcmocka-dev hipcc librocprim-dev"
deps() {
    if [ "${FG_SKIP_DEPS:-0}" = 1 ]; then echo "FG_SKIP_DEPS=1: package check skipped"; return 0; fi
    local missing=""
    for p in $PKGS; do have_pkg "$p" || missing="$missing $p"; done
    if [ -z "$missing" ]; then echo "all present: $PKGS"; return 0; fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update && apt-get install -y --no-install-recommends $missing
    else
        echo "missing Debian packages:$missing"
        echo "install them as root with:"
        echo "  apt-get update && apt-get install -y --no-install-recommends$missing"
        return 1
    fi
}
if ! run_stage deps deps; then
    echo "test.sh: cannot continue without the packages above"
    echo "test.sh: $PASSED passed, $FAILED failed"
    exit 1
fi

# ------------------------------------------------------------------ release build + tests
REL="$BUILD_ROOT/release"
if run_stage release bash -c "cmake -S . -B '$REL' -DCMAKE_BUILD_TYPE=Release -DFG_GPU=$GPU \
        -DFG_BUILD_TESTS=ON -DFG_BUILD_PERF=ON && cmake --build '$REL' -j$JOBS"; then
    run_ctest ctest "$REL"
else
    skip_stage ctest "release build failed"
fi

# ------------------------------------------------------------------ sanitizer build + tests
# CPU backend only: the CPU suite is what ASan/UBSan can see (GPU runtimes and ASan's
# shadow memory do not mix). -O2 -g without NDEBUG keeps asserts and usable stacks.
SAN="$BUILD_ROOT/sanitize"
if run_stage sanitize bash -c "cmake -S . -B '$SAN' -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_FLAGS_RELWITHDEBINFO='-O2 -g' -DFG_SANITIZE=ON -DFG_GPU=NONE \
        -DFG_BUILD_TESTS=ON -DFG_BUILD_PERF=ON && cmake --build '$SAN' -j$JOBS"; then
    # detect_leaks=1 turns LeakSanitizer on explicitly; any report fails the test.
    run_ctest ctest-san "$SAN" \
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        LSAN_OPTIONS=report_objects=1
else
    skip_stage ctest-san "sanitizer build failed"
fi

# ------------------------------------------------------------------ GPU compile checks
if command -v nvcc >/dev/null 2>&1; then
    if [ -f ci/build-cuda.sh ]; then run_stage cuda bash ci/build-cuda.sh
    else skip_stage cuda "ci/build-cuda.sh not present"; fi
else
    skip_stage cuda "nvcc not found"
fi
if [ -f ci/build-amd.sh ]; then run_stage amd bash ci/build-amd.sh
else skip_stage amd "ci/build-amd.sh not present"; fi

# ------------------------------------------------------------------ bench smoke run
BENCH="$REL/perf/forgeattn-bench"
if [ -x "$BENCH" ]; then
    run_stage bench "$BENCH" --quick --backend auto --json "$BUILD_ROOT/bench-smoke.jsonl"
else
    FAILED=$((FAILED + 1)); record bench "FAILED: $BENCH was not built" 0
fi

# ------------------------------------------------------------------ planning time
CAL="$REL/perf/forgeattn-calibrate"
if [ -x "$CAL" ]; then
    run_stage plantime bash -c '"$1" --plan-time --reps 501 && "$1" --plan-time --reps 501 --arch sm_90' _ "$CAL"
else
    FAILED=$((FAILED + 1)); record plantime "FAILED: $CAL was not built" 0
fi

# ------------------------------------------------------------------ summary
TOTAL=$(( $(date +%s) - T_START ))
note "summary (${TOTAL}s total; logs in $LOGS)"
for i in "${!STAGE_NAMES[@]}"; do
    printf '  %-10s %6ss  %s\n' "${STAGE_NAMES[$i]}" "${STAGE_SECS[$i]}" "${STAGE_RESULTS[$i]}"
done
echo "test.sh: $SKIPPED skipped (not counted below), total time ${TOTAL}s"
echo "test.sh: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
