/*
 * Per-architecture kernel shapes, in one table that both the kernels (hip/) and the
 * host (cost model, benchmark) can read: plain C, no GPU header. The kernels are
 * compiled for these shapes; the cost model must predict with the same numbers or
 * its tile-padding and per-block estimates are wrong.
 */
#ifndef FG_TUNING_H
#define FG_TUNING_H

#include <string.h>

typedef struct fg_kernel_tuning {
    const char *arch_prefix; /* matched against the device arch string's start */
    int matrix_path;         /* 1: mma.sync / MFMA tiles; 0: portable wave-per-row path */
    int tile_rows;           /* query rows (q tokens x group heads) per row block */
    int tile_kv;             /* KV tokens per tile for head_dim <= 128 (half for 256) */
    int threads;             /* threads per block */
    int stages;              /* shared-memory pipeline depth of the KV tiles */
    int blocks_per_unit;     /* resident blocks per SM/CU at head_dim 128 */
} fg_kernel_tuning;

/* The first matching row wins; the last row is the fallback. sm_80 and sm_90 run the
 * same mma.sync kernel (hip/attention.hip partial_mma4, default, and partial_mma,
 * FG_GPU_KERNEL=1: m16n8k16, cp.async double buffering of 64-token KV tiles, 4 warps of
 * 16 rows);
 * CDNA targets (gfx908, gfx90a, gfx940) run the MFMA kernel (hip/partial_mfma.hip: 2 waves
 * of 64 x 32 rows, 32-token KV tiles); other AMD targets run the portable path. */
static const fg_kernel_tuning fg_kernel_tuning_table[] = {
    {"sm_9", 1, 64, 64, 128, 2, 2},
    {"sm_8", 1, 64, 64, 128, 2, 2},
    {"sm_1", 1, 64, 64, 128, 2, 2}, /* sm_100 and later: mma.sync still runs there */
    {"gfx908", 1, 64, 32, 128, 1, 2},
    {"gfx90a", 1, 64, 32, 128, 1, 2},
    {"gfx940", 1, 64, 32, 128, 1, 2},
    {"gfx", 0, 8, 1, 256, 1, 4},
    {"", 0, 8, 1, 256, 1, 4},
};

static inline const fg_kernel_tuning *fg_kernel_tuning_for(const char *arch) {
    size_t n = sizeof fg_kernel_tuning_table / sizeof fg_kernel_tuning_table[0];
    for (size_t i = 0; i + 1 < n; i++) {
        const char *p = fg_kernel_tuning_table[i].arch_prefix;
        if (arch && strncmp(arch, p, strlen(p)) == 0) return &fg_kernel_tuning_table[i];
    }
    return &fg_kernel_tuning_table[n - 1];
}

#endif /* FG_TUNING_H */
