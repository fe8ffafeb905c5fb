/*
 * The AMD matrix (MFMA) path of the partial-attention pass (hip/partial_mfma.hip).
 * GPU translation units only; include after compat.h. Everything here exists only in
 * HIP builds (FG_HAVE_MFMA_PATH); the kernels carry MFMA code only in the device passes
 * of CDNA targets (gfx908, gfx90a, gfx940), and an empty stub elsewhere (gfx1030), so
 * the host must check fg_partial_mfma_arch_supported() before launching.
 */
#ifndef FG_HIP_PARTIAL_MFMA_H
#define FG_HIP_PARTIAL_MFMA_H

#include <string.h>

#include "compat.h"
#include "worklist.h"

#if FG_HIP
#define FG_HAVE_MFMA_PATH 1

/* Threads of one block of the MFMA kernel: 2 waves of 64, 32 query rows each. The block
 * shape is fixed in both compilation passes (the host pass has no wave size). */
#define FG_MFMA_THREADS 128

/* Whether the device (gcnArchName's processor, e.g. "gfx90a") has the MFMA path in this
 * build: the CDNA targets the build compiles with MFMA code. */
static inline bool fg_partial_mfma_arch_supported(const char *arch) {
    return arch && (strncmp(arch, "gfx908", 6) == 0 || strncmp(arch, "gfx90a", 6) == 0 ||
                    strncmp(arch, "gfx940", 6) == 0);
}

/* Enqueue the partial pass only (the merge stays fg_kernels_launch's): fp16 or bf16
 * (q_dtype == kv_dtype), head_dim_qk == head_dim_v in {64, 128, 256}, Q/K/V/O base
 * pointers and strides keeping 8-byte (4-element) groups aligned. Returns
 * hipErrorInvalidValue for any other shape, else the launch's error. Capture-safe. */
hipError_t fg_partial_mfma_launch(const fg_kernel_args *a, hipStream_t stream);

/* Resident blocks per CU of the MFMA kernel (fp16 instance) at this head dim. */
hipError_t fg_partial_mfma_occupancy(int head_dim, int *blocks_per_unit);
#endif

#endif /* FG_HIP_PARTIAL_MFMA_H */
