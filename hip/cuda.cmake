# NVIDIA build of the single-source kernels, included by the top-level CMakeLists.txt
# when FG_GPU_BACKEND is CUDA. CMake 3.25 has no CMAKE_HIP_PLATFORM=nvidia (3.28+),
# so the .hip files are compiled as CUDA (CMake passes -x cu) and hip/compat.h maps the
# hip* names: no HIP install is needed.

# sm_80 (A100) and sm_90a (H100/H200: sm_90 plus the arch-specific wgmma that kernel v9
# needs) by default; -DCMAKE_CUDA_ARCHITECTURES=... overrides. A plain "90" build runs
# kernel v4 on those devices (fg_kernels_init probes which code the device got). Newer
# GPUs JIT the sm_80 PTX. Must be set before enable_language, which otherwise picks the
# compiler's default.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80;90a")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_VISIBILITY_PRESET hidden)

set_source_files_properties(${FG_KERNEL_SOURCES} PROPERTIES LANGUAGE CUDA)
# The target was created before this file ran, so it did not pick up the default.
set_target_properties(forgeattn_objects PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
target_include_directories(forgeattn_objects PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/hip)
target_compile_definitions(forgeattn_objects PRIVATE FG_HAVE_CUDA)
# -lineinfo keeps source lines for compute-sanitizer and ncu at no run-time cost;
# ptxas -v / --warn-on-spills print each kernel's registers and spills: a hot kernel
# that spills is a bug to explain (STYLE.md).
set(FG_CUDA_KERNEL_FLAGS -lineinfo -Xptxas=-v,--warn-on-spills)
if(CMAKE_BUILD_TYPE STREQUAL "Release" OR CMAKE_BUILD_TYPE STREQUAL "RelWithDebInfo" OR NOT CMAKE_BUILD_TYPE)
  list(APPEND FG_CUDA_KERNEL_FLAGS -O3)
endif()
target_compile_options(forgeattn_objects PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${FG_CUDA_KERNEL_FLAGS}>)

# Static runtime: the library then runs against any driver new enough for the
# toolkit, without libcudart.so on the user's library path.
set(FG_GPU_LINK_LIBS CUDA::cudart_static)
set(FG_GPU_LANGUAGE CUDA)
