/*
 * Between hip/attention.hip (the kernels) and hip/backend.hip (the runtime side).
 * GPU translation units only.
 */
#ifndef FG_HIP_KERNELS_H
#define FG_HIP_KERNELS_H

#include "compat.h"
#include "worklist.h"

enum fg_kernel_path {
    FG_PATH_PORTABLE = 0, /* one wave per query row, scalar loads: any target, any stride */
    FG_PATH_MMA = 1       /* matrix tiles, 16-byte aligned tensors: mma.sync + cp.async on
                             NVIDIA sm80+, MFMA on CDNA (gfx908/gfx90a/gfx940) */
};

/* NVIDIA: whether this build has the mma.sync matrix path for a device of compute
 * capability major (sm80+). AMD: always false; the MFMA path (hip/partial_mfma.h) is
 * chosen per device by fg_partial_mfma_arch_supported(arch) in hip/backend.hip. */
bool fg_kernels_have_mma(int cc_major);
/* Raise the dynamic shared-memory limits of every kernel instance that needs more
 * than 48 KiB. Called once at open, never from run (not capture-safe on all runtimes). */
hipError_t fg_kernels_init(bool mma);
/* Resident blocks per SM/CU of the partial kernel for this head dim and path. */
hipError_t fg_kernels_occupancy(int head_dim, int path, int *blocks_per_unit);
/* Enqueue the partial pass and (if the plan has partial states) the merge pass. */
hipError_t fg_kernels_launch(const fg_kernel_args *a, int path, hipStream_t stream);

#endif /* FG_HIP_KERNELS_H */
