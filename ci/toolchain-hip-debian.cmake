# Toolchain file for the AMD (HIP) build with Debian 12's packaged HIP 5.2 (hipcc,
# libamdhip64-dev, clang 15). CMake 3.25's enable_language(HIP) does not find Debian's
# multiarch hip-lang config out of the box; these four settings make it work (DESIGN.md,
# "Portability"). Kept here, not in CMakeLists.txt, because they describe one distro.
#   cmake -S . -B build-amd -DFG_GPU=HIP -DCMAKE_TOOLCHAIN_FILE=ci/toolchain-hip-debian.cmake

set(FG_DEBIAN_MULTIARCH "/usr/lib/x86_64-linux-gnu")

# 1. Debian's HIP device code is compiled by its clang 15 (hipcc is a perl wrapper).
find_program(FG_CLANG_HIP NAMES clang++-15 REQUIRED)
set(CMAKE_HIP_COMPILER "${FG_CLANG_HIP}")

# 2. CMake looks for <root>/lib/cmake/hip-lang; Debian puts it under the multiarch
#    folder. A private root with a link to it satisfies the lookup. (Toolchain files are
#    read again inside try_compile projects, each with its own binary dir: recreate it.)
set(FG_ROCM_ROOT "${CMAKE_BINARY_DIR}/fg-rocm-root")
if(NOT EXISTS "${FG_ROCM_ROOT}/lib/cmake/hip-lang")
  file(MAKE_DIRECTORY "${FG_ROCM_ROOT}/lib/cmake")
  file(CREATE_LINK "${FG_DEBIAN_MULTIARCH}/cmake/hip-lang" "${FG_ROCM_ROOT}/lib/cmake/hip-lang" SYMBOLIC)
endif()
set(CMAKE_HIP_COMPILER_ROCM_ROOT "${FG_ROCM_ROOT}")

# 3. try_compile runs find_package(hip-lang) -> amd_comgr, hip: it only sees the
#    environment's CMAKE_PREFIX_PATH, not the cache's.
set(ENV{CMAKE_PREFIX_PATH} "${FG_DEBIAN_MULTIARCH}/cmake:/usr")
list(APPEND CMAKE_PREFIX_PATH "${FG_DEBIAN_MULTIARCH}/cmake" "/usr")

# 4. clang must be told where Debian keeps the HIP headers/runtime and the device
#    bitcode libraries (ocml, ockl), which are not where it looks by default.
set(CMAKE_HIP_FLAGS_INIT "--rocm-path=/usr --hip-device-lib-path=${FG_DEBIAN_MULTIARCH}/amdgcn/bitcode")
