#!/usr/bin/env bash
# THE main-job command: builds forgeattn (Release) and runs the benchmark suite
# (DESIGN.md workloads W1..W5) on the best backend present.
#
#   bash ci/bench.sh [forgeattn-bench options...]     e.g. --quick, --backend cpu, --markdown
#
# Missing Debian packages (build-essential cmake pkg-config libcmocka-dev) are installed
# with apt-get when run as root; otherwise, if the toolchain itself is missing, the exact
# apt-get command is printed and the script exits 1. The GPU backend is built when nvcc is found (CUDA) or when hipcc is
# found and an AMD GPU is present (/dev/kfd); FG_GPU=CUDA|HIP|NONE overrides that.
#
# Output: the table on stdout, and a JSON-lines archive
#   build/bench/bench-<UTC date>-<host>.jsonl   (first line: device/build record;
#                                                then one row per workload with a repro command)
#   build/bench/latest.jsonl, build/bench/latest.md (the same run, markdown table)
# Exit status: the benchmark's (non-zero if any result check failed).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_ROOT=${FG_BUILD_ROOT:-build}
JOBS=${FG_JOBS:-2}

# Needed: a C toolchain and cmake. pkg-config + libcmocka-dev are installed too when
# possible (they let the shared build/release also hold the tests); without them the
# bench is built with FG_BUILD_TESTS=OFF. Packages are tested by what they provide.
have_pkg() {
    case "$1" in
        build-essential) command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 &&
                         { command -v make >/dev/null 2>&1 || command -v ninja >/dev/null 2>&1; } ;;
        cmake) command -v cmake >/dev/null 2>&1 ;;
        pkg-config) command -v pkg-config >/dev/null 2>&1 ;;
        libcmocka-dev) [ -f /usr/include/cmocka.h ] ;;
    esac
}
if [ "${FG_SKIP_DEPS:-0}" != 1 ]; then
    missing=""
    for p in build-essential cmake pkg-config libcmocka-dev; do have_pkg "$p" || missing="$missing $p"; done
    if [ -n "$missing" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bench.sh: installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        # A machine without network still builds the bench if the toolchain is there.
        { apt-get update && apt-get install -y --no-install-recommends $missing; } \
            || echo "bench.sh: apt-get failed; going on with what is installed"
    fi
    need=""
    for p in build-essential cmake; do have_pkg "$p" || need="$need $p"; done
    if [ -n "$need" ]; then
        echo "bench.sh: missing Debian packages:$need"
        echo "install them as root with:"
        echo "  apt-get update && apt-get install -y --no-install-recommends$need pkg-config libcmocka-dev"
        exit 1
    fi
fi
TESTS=ON
if ! have_pkg pkg-config || ! have_pkg libcmocka-dev; then
    TESTS=OFF
    echo "bench.sh: no cmocka: building without the tests (FG_BUILD_TESTS=OFF)"
fi
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi

# Pick the GPU backend to build: the one whose device can actually run here.
if [ -z "${FG_GPU:-}" ]; then
    if command -v nvcc >/dev/null 2>&1; then FG_GPU=AUTO
    elif command -v hipcc >/dev/null 2>&1 && [ -e /dev/kfd ]; then FG_GPU=HIP
    else FG_GPU=NONE; fi
fi
EXTRA=()
# Ninja when there is no make (some GPU images); a build dir keeps its first generator.
if ! command -v make >/dev/null 2>&1 && command -v ninja >/dev/null 2>&1 && [ ! -f "$BUILD_ROOT/release/CMakeCache.txt" ]; then
    EXTRA+=(-G Ninja)
fi
if [ "$FG_GPU" = HIP ] && [ -f ci/toolchain-hip-debian.cmake ]; then
    EXTRA+=("-DCMAKE_TOOLCHAIN_FILE=$(pwd)/ci/toolchain-hip-debian.cmake")
fi

REL="$BUILD_ROOT/release"
cmake -S . -B "$REL" -DCMAKE_BUILD_TYPE=Release -DFG_GPU="$FG_GPU" -DFG_BUILD_TESTS=$TESTS \
    -DFG_BUILD_PERF=ON "${EXTRA[@]}"
cmake --build "$REL" -j"$JOBS" --target forgeattn-bench

OUTDIR="$BUILD_ROOT/bench"
mkdir -p "$OUTDIR"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)-$(hostname -s 2>/dev/null || echo host)"
JSON="$OUTDIR/bench-$STAMP.jsonl"
# The commit goes into the archive's first line (the binary only knows the configure-time one).
FG_BENCH_COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null | head -1)" ]; then FG_BENCH_COMMIT="$FG_BENCH_COMMIT-dirty"; fi
export FG_BENCH_COMMIT

rc=0
"$REL/perf/forgeattn-bench" --backend auto --json "$JSON" --markdown-file "$OUTDIR/latest.md" "$@" || rc=$?
cp "$JSON" "$OUTDIR/latest.jsonl" 2>/dev/null || true
echo "bench.sh: archive $JSON (also $OUTDIR/latest.jsonl, markdown $OUTDIR/latest.md)"
exit "$rc"
