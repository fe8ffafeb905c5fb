#!/usr/bin/env bash
# Everything that needs the GPU, in one command (device time is scarce: one call builds,
# tests and times). On an NVIDIA machine with nvcc, cmake and ninja:
#   bash ci/device.sh [--sanitize] [--arch 90] [--bench-args "--only W5 --runs 20"] [--no-bench]
# 1. builds Release with the CUDA backend for sm_<arch> in build-device/;
# 2. runs the GPU tests (ctest -L gpu) and, with --sanitize, compute-sanitizer memcheck
#    and racecheck on shortened GPU tests;
# 3. runs perf/forgeattn-bench --backend cuda --full and prints its table last.
# cmocka is not on the device image (and it has no apt): carry .deps/ holding
# libcmocka0 and libcmocka-dev .debs (apt-get download libcmocka0 libcmocka-dev); they are
# unpacked into a local prefix. Logs go to $OUT (or build-device/out).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
SANITIZE=0; ARCH=90; BENCH=1; BENCH_ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) SANITIZE=1 ;;
    --arch) ARCH="$2"; shift ;;
    --bench-args) BENCH_ARGS="$2"; shift ;;
    --no-bench) BENCH=0 ;;
    *) echo "device.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
BUILD=build-device
LOGDIR=${OUT:-$ROOT/$BUILD/out}
mkdir -p "$BUILD" "$LOGDIR"
JOBS=$(nproc 2>/dev/null || echo 8)
export PATH="/usr/local/cuda/bin:$PATH"
SUMMARY=()

# ---- cmocka from carried .debs, with a pkg-config answer for it
PREFIX="$ROOT/$BUILD/deps"
if ! pkg-config --exists cmocka 2>/dev/null; then
  ls .deps/*.deb >/dev/null 2>&1 || { echo "device.sh: no .deps/*.deb (cmocka) carried" >&2; exit 1; }
  mkdir -p "$PREFIX"
  for f in .deps/*.deb; do dpkg -x "$f" "$PREFIX"; done
  LIBDIR="$PREFIX/usr/lib/x86_64-linux-gnu"
  mkdir -p "$PREFIX/pc"
  printf 'prefix=%s/usr\nlibdir=%s\nincludedir=%s/usr/include\n\nName: cmocka\nDescription: cmocka (carried)\nVersion: 1.1.5\nLibs: -L%s -lcmocka\nCflags: -I%s/usr/include\n' \
    "$PREFIX" "$LIBDIR" "$PREFIX" "$LIBDIR" "$PREFIX" >"$PREFIX/pc/cmocka.pc"
  export PKG_CONFIG_PATH="$PREFIX/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export CMAKE_PREFIX_PATH="$PREFIX/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ! command -v pkg-config >/dev/null 2>&1; then
    # No pkg-config on the image: a stand-in that answers CMake's FindPkgConfig for cmocka.
    mkdir -p "$PREFIX/bin"
    cat >"$PREFIX/bin/pkg-config" <<PKG
#!/bin/sh
out=""
for a in "\$@"; do
  case "\$a" in
    --version) echo 0.29.2; exit 0 ;;
    --modversion) out="\$out 1.1.5" ;;
    --variable=prefix) out="\$out $PREFIX/usr" ;;
    --variable=libdir) out="\$out $LIBDIR" ;;
    --variable=includedir) out="\$out $PREFIX/usr/include" ;;
    --variable=*) ;;
    --cflags|--cflags-only-I) out="\$out -I$PREFIX/usr/include" ;;
    --libs) out="\$out -L$LIBDIR -lcmocka" ;;
    --libs-only-L) out="\$out -L$LIBDIR" ;;
    --libs-only-l) out="\$out -lcmocka" ;;
    cmocka|--exists|--print-errors|--short-errors|--*) ;;
    *) exit 1 ;;
  esac
done
[ -n "\$out" ] && echo \$out
exit 0
PKG
    chmod +x "$PREFIX/bin/pkg-config"
    export PATH="$PREFIX/bin:$PATH"
  fi
fi

# ---- build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
GEN=(); command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
t0=$(date +%s)
cmake -S . -B "$BUILD" "${GEN[@]}" -DFG_GPU=CUDA -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" >"$LOGDIR/configure.log" 2>&1 \
  || { tail -40 "$LOGDIR/configure.log"; echo "device.sh: configure FAILED"; exit 1; }
# -k 0: a broken test of another area must not keep the GPU tests from building.
cmake --build "$BUILD" -j "$JOBS" -- -k 0 >"$LOGDIR/build.log" 2>&1
grep -E "error|FAILED" "$LOGDIR/build.log" | head -20
echo "build: $(( $(date +%s) - t0 )) s"

# ---- GPU tests
GPU_TESTS=$(ls "$BUILD"/tests/fgtest_gpu_test_gpu 2>/dev/null)
if [ -z "$GPU_TESTS" ]; then
  SUMMARY+=("gpu tests: NOT BUILT")
else
  (cd "$BUILD" && ctest -R '^gpu\.' -j 6 --output-on-failure --timeout 600) >"$LOGDIR/ctest-gpu.log" 2>&1
  rc=$?
  grep -E "tests passed|Test +#|Failed|FAILED" "$LOGDIR/ctest-gpu.log" | tail -15
  [ $rc -ne 0 ] && grep -B2 -A25 "FAILED\|\[  ERROR" "$LOGDIR/ctest-gpu.log" | head -60
  SUMMARY+=("gpu ctest: $(grep -E 'tests passed' "$LOGDIR/ctest-gpu.log" | tail -1)")
fi

# ---- compute-sanitizer
if [ $SANITIZE = 1 ] && [ -n "$GPU_TESTS" ]; then
  CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
  for tool in memcheck racecheck; do
    for args in "random fp16" "random bf16" "portable mixed" "edges" "graph"; do
      log="$LOGDIR/san-$tool-${args// /-}.log"
      FGT_GPU_BATCHES=4 timeout 100 "$CS" --tool "$tool" --error-exitcode 9 "$GPU_TESTS" $args >"$log" 2>&1
      rc=$?
      errs=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log" | tail -1)
      echo "sanitize $tool [$args]: rc=$rc $errs"
      [ $rc -ne 0 ] && grep -m 20 -E "=========|FAILED|ERROR" "$log"
      SUMMARY+=("$tool [$args]: rc=$rc ${errs#=========}")
    done
  done
fi

# ---- benchmark
if [ $BENCH = 1 ] && [ -x "$BUILD/perf/forgeattn-bench" ]; then
  timeout "${FG_BENCH_TIMEOUT:-300}" "$BUILD/perf/forgeattn-bench" --backend cuda --full --markdown --json "$LOGDIR/bench.jsonl" $BENCH_ARGS \
    >"$LOGDIR/bench.txt" 2>&1
  echo "bench rc=$?"
  SUMMARY+=("bench: see table below (rc in line above)")
fi

echo "==== summary"
for s in "${SUMMARY[@]}"; do echo "  $s"; done
[ -f "$LOGDIR/bench.txt" ] && tail -40 "$LOGDIR/bench.txt"
exit 0
