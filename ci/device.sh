#!/usr/bin/env bash
# Everything that needs the GPU, in one command (device time is scarce: one call builds,
# tests and times). On an NVIDIA machine with nvcc, cmake and ninja:
#   bash ci/device.sh [--sanitize] [--arch 90a] [--bench-args "--only W5 --runs 20"] [--no-bench]
#                     [--no-tests] [--calibrate [--bench-measured]] [--compare-v1 "W4,W5"]
#                     [--ncu "W4,W5"] [--compare-kernels "1 4"] [--timing "4 8"]
#                     [--compare-env "FG_GPU_FUSED_MERGE=0 FG_GPU_FUSED_MERGE=1"] [--test-env "FG_GPU_KERNEL=9"]
# 1. builds Release with the CUDA backend for sm_<arch> (default 90a: wgmma) in build-device/;
# 2. runs the GPU tests (ctest -L gpu) and, with --sanitize, compute-sanitizer memcheck
#    and racecheck on shortened GPU tests; with --test-env "VAR=VAL ...", the GPU tests again
#    under each assignment;
# 3. runs perf/forgeattn-bench --backend cuda --full and prints its table last;
# 4. with --calibrate: forgeattn-calibrate measures the device's cost-model table into
#    $OUT/<arch>-<SMs>-measured.txt and checks its predictions on W1..W5 (--check); with
#    --bench-measured also runs the bench a second time planning with it (FG_CALIBRATION);
# 5. with --compare-v1 IDS: the bench again on those workloads with the first kernel
#    version (FG_GPU_KERNEL=1) for a same-run comparison.
# 6. with --compare-kernels "V1 V2 ...": the full bench once per FG_GPU_KERNEL value (same run).
# 6b. with --compare-env "VAR=VAL ...": the full bench once per assignment (same run),
#    e.g. the fused vs the separate merge.
# 7. with --ncu IDS: Nsight Compute (--set full) on the first partial-kernel launch of each
#    workload (FG_NCU_KERNEL: another kernel-name regex, e.g. merge_states); details,
#    stall metrics and the SASS source view (stall samples) go to $OUT.
# 8. with --timing "V1 V2 ...": a second build (build-device-timing, -DFG_KERNEL_TIMING, bench
#    only) whose partial kernel records per-block/per-task clocks; per kernel version and
#    workload it prints block-span spread, time per tile step by row class, longest tasks.
# cmocka is not on the device image (and it has no apt): carry .deps/ holding
# libcmocka0 and libcmocka-dev .debs (apt-get download libcmocka0 libcmocka-dev); they are
# unpacked into a local prefix. Logs go to $OUT (or build-device/out).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
SANITIZE=0; ARCH=90a; BENCH=1; BENCH_ARGS=""; TESTS=1; CALIBRATE=0; BENCH_MEASURED=0; COMPARE_V1=""
NCU=""; COMPARE_KERNELS=""; TIMING=""; COMPARE_ENV=""; TEST_ENV=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) SANITIZE=1 ;;
    --arch) ARCH="$2"; shift ;;
    --bench-args) BENCH_ARGS="$2"; shift ;;
    --no-bench) BENCH=0 ;;
    --no-tests) TESTS=0 ;;
    --calibrate) CALIBRATE=1 ;;
    --bench-measured) BENCH_MEASURED=1 ;;
    --compare-v1) COMPARE_V1="$2"; shift ;;
    --ncu) NCU="$2"; shift ;;
    --compare-kernels) COMPARE_KERNELS="$2"; shift ;;
    --compare-env) COMPARE_ENV="$2"; shift ;;
    --test-env) TEST_ENV="$2"; shift ;;
    --timing) TIMING="$2"; shift ;;
    *) echo "device.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
BUILD=build-device
LOGDIR=${OUT:-$ROOT/$BUILD/out}
# The bench's commit comes from CMake's configure, which a kept build folder does not redo:
# give it the tree's commit now (marked when the tree has local changes).
if [ -z "${FG_BENCH_COMMIT:-}" ] && c=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  git diff --quiet HEAD 2>/dev/null || c="$c+changes"
  export FG_BENCH_COMMIT="$c"
fi
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

# ---- build (the device image's gcc warns maybe-uninitialized where the local one does not:
# kept a warning there, so another area's false positive cannot stop the GPU run)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
GEN=(); command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
t0=$(date +%s)
cmake -S . -B "$BUILD" "${GEN[@]}" -DFG_GPU=CUDA -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" "-DCMAKE_C_FLAGS=${FG_DEVICE_CFLAGS--Wno-error=maybe-uninitialized}" \
  >"$LOGDIR/configure.log" 2>&1 \
  || { tail -40 "$LOGDIR/configure.log"; echo "device.sh: configure FAILED"; exit 1; }
# -k 0: a broken test of another area must not keep the GPU tests from building.
cmake --build "$BUILD" -j "$JOBS" -- -k 0 >"$LOGDIR/build.log" 2>&1
grep -E "error|FAILED" "$LOGDIR/build.log" | head -20
echo "build: $(( $(date +%s) - t0 )) s"

# ---- GPU tests
GPU_TESTS=$(ls "$BUILD"/tests/fgtest_gpu_test_gpu 2>/dev/null)
if [ $TESTS = 0 ]; then
  SUMMARY+=("gpu tests: skipped (--no-tests)")
elif [ -z "$GPU_TESTS" ]; then
  SUMMARY+=("gpu tests: NOT BUILT")
else
  (cd "$BUILD" && ctest -R '^gpu\.' -j 6 --output-on-failure --timeout "${FG_CTEST_TIMEOUT:-600}") >"$LOGDIR/ctest-gpu.log" 2>&1
  rc=$?
  grep -E "tests passed|Test +#|Failed|FAILED" "$LOGDIR/ctest-gpu.log" | tail -15
  [ $rc -ne 0 ] && grep -B2 -A25 "FAILED\|\[  ERROR" "$LOGDIR/ctest-gpu.log" | head -60
  SUMMARY+=("gpu ctest: $(grep -E 'tests passed' "$LOGDIR/ctest-gpu.log" | tail -1)")
  for asg in $TEST_ENV; do  # the GPU tests again under each VAR=VALUE (e.g. another kernel)
    log="$LOGDIR/ctest-gpu-${asg//[^A-Za-z0-9_]/-}.log"
    (cd "$BUILD" && env "$asg" ctest -R '^gpu\.' -j 6 --output-on-failure --timeout "${FG_CTEST_TIMEOUT:-600}") >"$log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && grep -B2 -A25 "FAILED\|\[  ERROR" "$log" | head -60
    SUMMARY+=("gpu ctest [$asg]: $(grep -E 'tests passed' "$log" | tail -1)")
  done
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

# ---- calibration: measured table, its check, and the bench planned with it
if [ $CALIBRATE = 1 ] && [ -x "$BUILD/perf/forgeattn-calibrate" ]; then
  TABLE="$LOGDIR/calibrated.txt"
  timeout "${FG_CALIBRATE_TIMEOUT:-240}" "$BUILD/perf/forgeattn-calibrate" -o "$TABLE" >"$LOGDIR/calibrate.txt" 2>&1
  echo "calibrate rc=$?"
  if [ -f "$TABLE" ]; then  # name it as cost_model/ does: <arch>-<units>-measured.txt
    n="$(awk -F' *= *' '$1=="arch"{a=$2} $1=="compute_units"{u=$2} END{print a "-" u}' "$TABLE")-measured.txt"
    mv "$TABLE" "$LOGDIR/$n" && TABLE="$LOGDIR/$n"; echo "table: $TABLE"
  fi
  tr '\r' '\n' <"$LOGDIR/calibrate.txt" | grep -E "fitted|wrote|rate|GB/s|task" | tail -12
  if [ -f "$TABLE" ]; then
    timeout "${FG_CALIBRATE_TIMEOUT:-240}" "$BUILD/perf/forgeattn-calibrate" --check "$TABLE" >"$LOGDIR/check.txt" 2>&1
    echo "check rc=$?"; grep -E "^\||table" "$LOGDIR/check.txt"
    if [ $BENCH_MEASURED = 1 ]; then
      FG_CALIBRATION="$TABLE" timeout "${FG_BENCH_TIMEOUT:-300}" "$BUILD/perf/forgeattn-bench" --backend cuda --full \
        --markdown --json "$LOGDIR/bench-measured.jsonl" $BENCH_ARGS >"$LOGDIR/bench-measured.txt" 2>&1
      echo "bench (measured table) rc=$?"
      SUMMARY+=("bench planned with the measured table: bench-measured.txt")
    fi
  fi
fi
# ---- the first kernel version on some workloads, for a same-run comparison
if [ -n "$COMPARE_V1" ] && [ -x "$BUILD/perf/forgeattn-bench" ]; then
  FG_GPU_KERNEL=1 timeout 200 "$BUILD/perf/forgeattn-bench" --backend cuda --full --markdown \
    --only "$COMPARE_V1" $BENCH_ARGS >"$LOGDIR/bench-v1.txt" 2>&1
  echo "bench v1 rc=$?"
fi

# ---- several kernel versions, full bench each, same run
for kv in $COMPARE_KERNELS; do
  [ -x "$BUILD/perf/forgeattn-bench" ] || break
  FG_GPU_KERNEL=$kv timeout 200 "$BUILD/perf/forgeattn-bench" --backend cuda --full --markdown \
    $BENCH_ARGS >"$LOGDIR/bench-k$kv.txt" 2>&1
  echo "bench FG_GPU_KERNEL=$kv rc=$?"
done
# ---- one environment assignment per bench, same run (alternated twice against drift)
for rep in 1 2; do
  for ev in $COMPARE_ENV; do
    [ -x "$BUILD/perf/forgeattn-bench" ] || break
    env "$ev" timeout 200 "$BUILD/perf/forgeattn-bench" --backend cuda --full --markdown \
      $BENCH_ARGS >"$LOGDIR/bench-env-${ev//[^A-Za-z0-9_.]/-}-$rep.txt" 2>&1
    echo "bench $ev (pass $rep) rc=$?"
  done
done
# ---- per-block / per-task timing (debug build, never the default one)
if [ -n "$TIMING" ]; then
  cmake -S . -B build-device-timing "${GEN[@]}" -DFG_GPU=CUDA -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" -DCMAKE_CUDA_FLAGS=-DFG_KERNEL_TIMING -DFG_BUILD_TESTS=OFF \
    "-DCMAKE_C_FLAGS=${FG_DEVICE_CFLAGS--Wno-error=maybe-uninitialized}" >"$LOGDIR/timing-configure.log" 2>&1 &&
    cmake --build build-device-timing -j "$JOBS" --target forgeattn-bench >"$LOGDIR/timing-build.log" 2>&1 ||
    echo "device.sh: timing build FAILED (see timing-build.log)"
  for kv in $TIMING; do
    for w in W1n16 W1n32 W2 W3 W4 W5; do
      echo "== FG_GPU_KERNEL=$kv $w"
      FG_GPU_KERNEL=$kv timeout 60 build-device-timing/perf/forgeattn-bench --backend cuda --only "$w" \
        --runs 5 --warmup 2 2>&1 | grep -E "^fgt|rror"
    done
  done >"$LOGDIR/timing.txt" 2>&1
  SUMMARY+=("timing: timing.txt (first fgt block per workload: shared plan)")
fi
# ---- Nsight Compute on the partial kernel
if [ -n "$NCU" ] && [ -x "$BUILD/perf/forgeattn-bench" ]; then
  NCUB=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  echo "ncu: ${NCUB:-NOT FOUND}"
  for w in ${NCU//,/ }; do
    [ -n "$NCUB" ] || break
    NCUDIR=${FG_NCU_DIR:-$LOGDIR}; mkdir -p "$NCUDIR"   # FG_NCU_DIR: keep the big files off $OUT
    rep="$NCUDIR/ncu-$w"
    timeout 240 "$NCUB" --set full --import-source no -k "regex:${FG_NCU_KERNEL:-partial_mma}" --launch-count 1 -f -o "$rep" \
      "$BUILD/perf/forgeattn-bench" --backend cuda --only "$w" --runs 1 --warmup 1 >"$NCUDIR/ncu-$w.run.log" 2>&1
    echo "ncu $w rc=$?"; tail -3 "$NCUDIR/ncu-$w.run.log"
    "$NCUB" --import "$rep.ncu-rep" --page details --print-details all >"$NCUDIR/ncu-$w-details.txt" 2>&1
    "$NCUB" --import "$rep.ncu-rep" --page raw --csv >"$NCUDIR/ncu-$w-raw.csv" 2>&1
    "$NCUB" --import "$rep.ncu-rep" --page source --csv --print-source sass >"$NCUDIR/ncu-$w-sass.csv" 2>&1
    rm -f "$rep.ncu-rep"
    echo "---- ncu $w"
    grep -E "^ +(Duration|DRAM Throughput|Memory Throughput|L2 Hit Rate|Compute \(SM\) Throughput|Achieved Occupancy|Theoretical Occupancy|Issue Slots Busy|Issued Warp Per Scheduler|No Eligible|Active Warps Per Scheduler|Eligible Warps Per Scheduler|Warp Cycles Per Issued Instruction|Registers Per Thread|Executed Ipc Active|Block Limit Shared Mem) " \
      "$NCUDIR/ncu-$w-details.txt" | sed 's/  */ /g'
    python3 - "$NCUDIR/ncu-$w-raw.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
hdr = next((i for i, r in enumerate(rows) if r and r[0] == "ID"), None)
if hdr is not None and len(rows) > hdr + 2:
    names, vals = rows[hdr], rows[hdr + 2]
    st = [(float(v.replace(",", "")), n) for n, v in zip(names, vals)
          if n.startswith("smsp__average_warps_issue_stalled_") and n.endswith("_per_issue_active.ratio")
          and v.replace(",", "").replace(".", "").isdigit()]
    for v, n in sorted(st, reverse=True)[:9]:
        print("  stall %-28s %.2f" % (n[len("smsp__average_warps_issue_stalled_"):-len("_per_issue_active.ratio")], v))
PY
    # SASS view: where the stall samples are (top instructions, with their largest reasons)
    python3 - "$NCUDIR/ncu-$w-sass.csv" <<'PY' 2>&1 | head -60
import csv, sys
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
hdr = next((i for i, r in enumerate(rows) if r and ("Address" in r or "# Address" in r)), None)
if hdr is None:
    print("  sass: no header; first lines:", rows[:3]); sys.exit()
H = rows[hdr]; body = [r for r in rows[hdr + 1:] if len(r) == len(H)]
def col(name):
    return next((i for i, h in enumerate(H) if h.startswith(name)), None)
ia, isrc = col("Address") or col("# Address"), col("Source")
iall = col("Warp Stall Sampling (All")
if iall is None:
    print("  sass columns:", H[:40]); sys.exit()
num = lambda v: float(v.replace(",", "") or 0) if v.replace(",", "").replace(".", "").isdigit() else 0.0
tot = sum(num(r[iall]) for r in body) or 1.0
reasons = [i for i, h in enumerate(H) if h.startswith("stall_") or h.startswith("smsp__pcsamp_warps_issue_stalled")]
print("  sass: %d instructions, %d stall samples" % (len(body), tot))
idx = sorted(range(len(body)), key=lambda j: -num(body[j][iall]))[:36]
for j in sorted(idx):
    r = body[j]
    rs = sorted(((num(r[i]), H[i].replace("smsp__pcsamp_warps_issue_stalled_", "")) for i in reasons), reverse=True)[:2]
    print("  %5d %5.1f%% %-60s %s" % (j, 100 * num(r[iall]) / tot, r[isrc][:60], " ".join("%s=%d" % (n, v) for v, n in rs if v)))
# share by 200-instruction region (program order), for a coarse map
reg = {}
for j, r in enumerate(body): reg[j // 200] = reg.get(j // 200, 0) + num(r[iall])
print("  by 200-instr region:", " ".join("%d:%.0f%%" % (k * 200, 100 * v / tot) for k, v in sorted(reg.items())))
PY
  done
fi

echo "==== summary"
for s in "${SUMMARY[@]}"; do echo "  $s"; done
[ -f "$LOGDIR/bench-v1.txt" ] && { echo "---- v1 kernel (FG_GPU_KERNEL=1)"; grep -E "^\|" "$LOGDIR/bench-v1.txt"; }
[ -f "$LOGDIR/bench-measured.txt" ] && { echo "---- planned with the measured table"; grep -E "^\|" "$LOGDIR/bench-measured.txt"; }
for kv in $COMPARE_KERNELS; do
  [ -f "$LOGDIR/bench-k$kv.txt" ] && { echo "---- FG_GPU_KERNEL=$kv"; grep -E "^\|" "$LOGDIR/bench-k$kv.txt"; }
done
for rep in 1 2; do
  for ev in $COMPARE_ENV; do
    f="$LOGDIR/bench-env-${ev//[^A-Za-z0-9_.]/-}-$rep.txt"
    [ -f "$f" ] && { echo "---- $ev (pass $rep)"; grep -E "^\|" "$f"; }
  done
done
[ -f "$LOGDIR/bench.txt" ] && tail -40 "$LOGDIR/bench.txt"
exit 0
