# AMD build of the single-source kernels, included by the top-level CMakeLists.txt when
# FG_GPU_BACKEND is HIP. On Debian 12 configure with ci/toolchain-hip-debian.cmake.
# Targets: gfx908 (MI100), gfx90a (MI200), gfx940 (MI300 early) are CDNA wave64;
# gfx1030 (RDNA2) is wave32. Debian's clang 15 rejects gfx941/gfx942/gfx1100+.
if(NOT DEFINED CMAKE_HIP_ARCHITECTURES)
  set(CMAKE_HIP_ARCHITECTURES "gfx908;gfx90a;gfx940;gfx1030")
endif()
enable_language(HIP)
# Not find_package(hip): Debian's hip-config.cmake assumes the CXX language is enabled.
# The HIP runtime library is all the host side needs.
find_library(FG_AMDHIP64 NAMES amdhip64 REQUIRED)

set(CMAKE_HIP_STANDARD 17)
set(CMAKE_HIP_STANDARD_REQUIRED ON)
set(CMAKE_HIP_VISIBILITY_PRESET hidden)

set_source_files_properties(${FG_KERNEL_SOURCES} PROPERTIES LANGUAGE HIP)
# The target was created before this file ran, so it did not pick up the default.
set_target_properties(forgeattn_objects PROPERTIES HIP_ARCHITECTURES "${CMAKE_HIP_ARCHITECTURES}")
target_include_directories(forgeattn_objects PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/hip)
target_compile_definitions(forgeattn_objects PRIVATE FG_HAVE_HIP)
# -Rpass-analysis=kernel-resource-usage prints each kernel's VGPRs, SGPRs, scratch
# (spills) and occupancy, the AMD counterpart of ptxas -v (STYLE.md, kernel builds).
target_compile_options(forgeattn_objects PRIVATE
  $<$<COMPILE_LANGUAGE:HIP>:-O3 -Rpass-analysis=kernel-resource-usage>)

set(FG_GPU_LINK_LIBS ${FG_AMDHIP64})
set(FG_GPU_LANGUAGE HIP)
