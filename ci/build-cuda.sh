#!/usr/bin/env bash
# Compile check of the NVIDIA path (no GPU needed): configures a CUDA build for sm_80 and
# sm_90a with the nvcc on this machine and builds the library and the GPU tests. Prints
# what it built (kernels, registers, spills) and exits non-zero on any failure.
#   bash ci/build-cuda.sh            # build dir: build/cuda (FG_BUILD_ROOT overrides build)
# Environment: FG_CUDA_ARCHS (default "80;90a"), FG_JOBS (default 2), CUDACXX / PATH for nvcc.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD="${FG_BUILD_ROOT:-build}/cuda"
ARCHS="${FG_CUDA_ARCHS:-80;90a}"
JOBS="${FG_JOBS:-2}"
mkdir -p "$BUILD"

if ! command -v nvcc >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /usr/local/cuda-13.0/bin; do
    [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && break
  done
fi
command -v nvcc >/dev/null 2>&1 || { echo "build-cuda.sh: nvcc not found (install the CUDA toolkit or set PATH)" >&2; exit 1; }
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)

echo "build-cuda.sh: $(nvcc --version | tail -1), architectures ${ARCHS}, in ${BUILD}"
cmake -S . -B "$BUILD" "${GEN[@]}" -DFG_GPU=CUDA -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_CUDA_ARCHITECTURES=${ARCHS}" -DFG_BUILD_TESTS=OFF -DFG_BUILD_PERF=OFF >"$BUILD.configure.log" 2>&1 \
  || { cat "$BUILD.configure.log"; echo "build-cuda.sh: configure FAILED" >&2; exit 1; }
cmake --build "$BUILD" -j "$JOBS" >"$BUILD.build.log" 2>&1 \
  || { tail -60 "$BUILD.build.log"; echo "build-cuda.sh: build FAILED" >&2; exit 1; }

# One line per kernel and architecture: registers and spills, from ptxas -v.
awk '/Compiling entry function/ { match($0, /_Z[^'"'"']*/); fn = substr($0, RSTART, RLENGTH);
       match($0, /sm_[0-9a]+/); arch = substr($0, RSTART, RLENGTH) }
     /spill stores/ { sp = $0; sub(/^[ \t]*/, "", sp) }
     /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); printf "  %-6s %-22s %s; %s\n", arch, substr($0, RSTART + 5, RLENGTH - 5), sp, fn }' \
  "$BUILD.build.log" | sed 's/_ZN[0-9]*_GLOBAL__N__[0-9a-f_]*attention_hip_[0-9a-f]*//' | sort -u
if grep -q "Registers are spilled" "$BUILD.build.log"; then
  echo "build-cuda.sh: note: spills reported (ptxas):"; grep "Registers are spilled" "$BUILD.build.log" | sed 's/^/  /' | sort -u
fi
ls -l "$BUILD"/libforgeattn.* | sed 's/^/  /'
echo "build-cuda.sh: OK (sm ${ARCHS})"
