#!/usr/bin/env bash
# Compile check of the AMD path (no GPU needed) with Debian 12's HIP 5.2 (hipcc, clang 15):
# wave64 CDNA targets gfx908, gfx90a, gfx940 and the wave32 RDNA2 target gfx1030, so both
# wave sizes of the single kernel source are compiled every run. Installs hipcc and
# librocprim-dev with apt-get when they are missing and we are root. Prints what it
# built and exits non-zero on any failure.
#   bash ci/build-amd.sh            # build dir: build/amd (FG_BUILD_ROOT overrides build)
# Environment: FG_AMD_ARCHS (default "gfx908;gfx90a;gfx940;gfx1030"), FG_JOBS (default 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD="${FG_BUILD_ROOT:-build}/amd"
ARCHS="${FG_AMD_ARCHS:-gfx908;gfx90a;gfx940;gfx1030}"
JOBS="${FG_JOBS:-2}"
mkdir -p "$BUILD"

need=()
command -v hipcc >/dev/null 2>&1 || need+=(hipcc)
[ -f /usr/include/rocprim/rocprim.hpp ] || need+=(librocprim-dev)
command -v clang++-15 >/dev/null 2>&1 || need+=(clang-15)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "build-amd.sh: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "build-amd.sh: missing ${need[*]}: run as root: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)

echo "build-amd.sh: $(clang++-15 --version | head -1), targets ${ARCHS}, in ${BUILD}"
cmake -S . -B "$BUILD" "${GEN[@]}" -DFG_GPU=HIP -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=ci/toolchain-hip-debian.cmake "-DCMAKE_HIP_ARCHITECTURES=${ARCHS}" \
  -DFG_BUILD_TESTS=OFF -DFG_BUILD_PERF=OFF >"$BUILD.configure.log" 2>&1 \
  || { cat "$BUILD.configure.log"; echo "build-amd.sh: configure FAILED" >&2; exit 1; }
cmake --build "$BUILD" -j "$JOBS" >"$BUILD.build.log" 2>&1 \
  || { tail -60 "$BUILD.build.log"; echo "build-amd.sh: build FAILED" >&2; exit 1; }

# Which device code objects went into each kernel object: one per target.
for o in $(find "$BUILD" -name '*.hip.o' | sort); do
  echo "  $(basename "$o"): $(grep -ao 'amdgcn-amd-amdhsa-*gfx[0-9a-f]*' "$o" | sed 's/.*--*//' | sort -u | tr '\n' ' ')"
done
ls -l "$BUILD"/libforgeattn.* | sed 's/^/  /'
echo "build-amd.sh: OK (${ARCHS})"
