/*
 * Cost model. A task runs on one persistent block while the others run theirs, so it
 * gets a 1/blocks share of the device's copy bandwidth and matrix rate; its time is the
 * larger of its memory and matrix times (the kernels overlap the two) plus a fixed cost.
 */
#include "cost_model.h"

#include "../hip/tuning.h" /* the kernels' tile shapes: plain C, shared with hip/ */

#include <stdio.h>
#include <string.h>

typedef struct arch_defaults {
    const char *arch;
    int32_t compute_units, blocks_per_unit, warp_size;
    double copy_gbs, gather_eff, mma_tflops_f16, fma_tflops_f32;
    double task_fixed_us, launch_us;
    int32_t tile_kv, tile_rows;
    const char *device;
} arch_defaults;

/*
 * Estimated, not measured. Bandwidth and rates are datasheet peaks derated to what
 * streaming kernels usually reach (copy ~85% of HBM peak; mma.sync/MFMA attention
 * ~60% of dense matrix peak); fixed and launch costs are typical driver figures.
 *  sm_80  A100 SXM4 80GB: 2039 GB/s HBM2e, 312 TFLOP/s fp16 dense, 19.5 fp32, 108 SMs
 *         (NVIDIA A100 datasheet, 2021).
 *  sm_90  H100 SXM5: 3350 GB/s HBM3, 989 TFLOP/s fp16 dense (wgmma; mma.sync reaches
 *         about 2/3), 67 fp32, 132 SMs (NVIDIA H100 datasheet, 2023).
 *  gfx908 MI100: 1229 GB/s HBM2, 184.6 TFLOP/s fp16 matrix, 23.1 fp32, 120 CUs
 *         (AMD Instinct MI100 datasheet).
 *  gfx90a MI250X, one GCD (what HIP exposes as a device): 1638 GB/s, 191.5 TFLOP/s
 *         fp16 matrix, 23.9 fp32 vector, 110 CUs (AMD Instinct MI250X datasheet / 2).
 *  gfx942 MI300X: 5300 GB/s HBM3, 1307 TFLOP/s fp16 dense matrix, 163.4 fp32, 304 CUs
 *         (AMD Instinct MI300X datasheet).
 *  generic: a conservative mid-range GPU so that unknown devices plan sensibly.
 */
static const arch_defaults k_defaults[] = {
    {"sm_80", 108, 2, 32, 1730.0, 0.85, 190.0, 19.5, 1.5, 4.0, 64, 64, "NVIDIA A100 (estimated)"},
    {"sm_90", 132, 2, 32, 2850.0, 0.85, 600.0, 67.0, 1.2, 3.5, 64, 64, "NVIDIA H100 (estimated)"},
    {"gfx908", 120, 2, 64, 1040.0, 0.80, 110.0, 23.1, 2.0, 7.0, 64, 64, "AMD MI100 (estimated)"},
    {"gfx90a", 110, 2, 64, 1390.0, 0.80, 115.0, 23.9, 2.0, 7.0, 64, 64, "AMD MI250X GCD (estimated)"},
    {"gfx942", 304, 2, 64, 4200.0, 0.80, 700.0, 163.4, 1.5, 6.0, 64, 64, "AMD MI300X (estimated)"},
};

void fg_cost_defaults(const char *arch, int32_t compute_units, int32_t warp_size,
                      fg_cost_params *p) {
    memset(p, 0, sizeof *p);
    if (!arch) arch = "";
    snprintf(p->arch, sizeof p->arch, "%s", arch);
    p->measured = 0;
    if (strcmp(arch, "cpu") == 0) {
        /* The CPU backend: one block per thread. Measured by forgeattn-calibrate on the
         * 2-core CI machine: ~20 GB/s memcpy (read + write), but the kernel ingests KV at
         * only ~0.45 GB/s per thread (fp16 -> fp32 conversion and the K transpose), and
         * computes ~0.008 TFLOP/s per thread. Its score loop always spans a whole 64-token
         * tile: pad_kv = 64. */
        int32_t t = compute_units > 0 ? compute_units : 1;
        snprintf(p->device, sizeof p->device, "cpu (estimated)");
        p->compute_units = t;
        p->blocks_per_unit = 1;
        p->warp_size = 1;
        p->copy_gbs = 20.0;
        p->gather_eff = 0.45 * t / p->copy_gbs < 1.0 ? 0.45 * t / p->copy_gbs : 1.0;
        p->mma_tflops_f16 = 0.008 * t;
        p->fma_tflops_f32 = 0.008 * t;
        p->task_fixed_us = 2.0;
        p->launch_us = 2.0;
        p->tile_kv = 64;
        p->tile_rows = 64;
        p->pad_rows = 1;
        p->pad_kv = 64;
    } else {
        const arch_defaults *d = NULL;
        for (size_t i = 0; i < sizeof k_defaults / sizeof k_defaults[0]; i++)
            if (strcmp(arch, k_defaults[i].arch) == 0) d = &k_defaults[i];
        static const arch_defaults generic = {"generic", 80, 2, 32, 500.0, 0.75, 50.0, 10.0,
                                              2.0, 8.0, 64, 64, "generic GPU (estimated)"};
        if (!d) d = &generic;
        snprintf(p->device, sizeof p->device, "%s", d->device);
        p->compute_units = compute_units > 0 ? compute_units : d->compute_units;
        p->blocks_per_unit = d->blocks_per_unit;
        p->warp_size = warp_size > 0 ? warp_size : d->warp_size;
        /* Rates scale with the unit count when a part has fewer units than the datasheet's. */
        double scale = (double)p->compute_units / d->compute_units;
        p->copy_gbs = d->copy_gbs * (scale < 1.0 ? scale : 1.0);
        p->gather_eff = d->gather_eff;
        p->mma_tflops_f16 = d->mma_tflops_f16 * scale;
        p->fma_tflops_f32 = d->fma_tflops_f32 * scale;
        p->task_fixed_us = d->task_fixed_us;
        p->launch_us = d->launch_us;
        /* Tiles as the kernels are compiled for this arch (hip/tuning.h); the portable
         * wave-per-row path has no matrix units and pads nothing. */
        const fg_kernel_tuning *kt = fg_kernel_tuning_for(p->arch);
        p->tile_kv = kt->tile_kv;
        p->tile_rows = kt->tile_rows;
        p->blocks_per_unit = kt->blocks_per_unit;
        p->pad_rows = kt->matrix_path ? 16 : 1;
        p->pad_kv = kt->matrix_path ? kt->tile_kv : 1;
        if (!kt->matrix_path) p->mma_tflops_f16 = p->fma_tflops_f32;
    }
    /* A partial row (fp32 O of head_dim 128 + LSE) is read once by the merge and an
     * O row written: ~600 bytes at the device's copy bandwidth. */
    p->merge_us_per_row = 600.0 / (p->copy_gbs * 1e3);
}

int32_t fg_cost_blocks(const fg_cost_params *p) {
    int64_t b = (int64_t)p->compute_units * (p->blocks_per_unit > 0 ? p->blocks_per_unit : 1);
    return b < 1 ? 1 : (b > (1 << 20) ? (1 << 20) : (int32_t)b);
}

double fg_cost_gather_eff(const fg_cost_params *p, int32_t page_size) {
    /* gather_eff is measured at 16-token pages; the loss per page boundary scales with
     * the number of boundaries, so eff(ps) = 1 / (1 + (1/eff16 - 1) * 16 / ps). */
    double e16 = p->gather_eff > 0.0 && p->gather_eff <= 1.0 ? p->gather_eff : 1.0;
    double ps = page_size > 0 ? page_size : 16;
    return 1.0 / (1.0 + (1.0 / e16 - 1.0) * 16.0 / ps);
}

void fg_cost_fast_init(const fg_cost_params *p, const fg_cost_shape *s, fg_cost_fast *f) {
    double blocks = fg_cost_blocks(p);
    f->s = *s;
    f->pad_rows = p->pad_rows;
    f->pad_kv = p->pad_kv;
    f->bw = p->copy_gbs * 1e3 / blocks; /* bytes per microsecond per block */
    f->bw_eff = f->bw * fg_cost_gather_eff(p, s->page_size);
    f->mma_rate = p->mma_tflops_f16 * 1e6 / blocks;
    f->fma_rate = p->fma_tflops_f32 * 1e6 / blocks;
}

double fg_cost_mem_us(const fg_cost_params *p, const fg_cost_shape *s, int32_t rows,
                      int32_t partial_rows, int64_t kv_tokens) {
    fg_cost_fast f;
    fg_cost_fast_init(p, s, &f);
    return fg_cost_fast_mem_us(&f, rows, partial_rows, kv_tokens);
}

double fg_cost_compute_us(const fg_cost_params *p, const fg_cost_shape *s, int32_t rows,
                          int64_t kv_tokens) {
    fg_cost_fast f;
    fg_cost_fast_init(p, s, &f);
    return fg_cost_fast_compute_us(&f, rows, kv_tokens);
}

double fg_cost_task_us(const fg_cost_params *p, const fg_cost_shape *s, int32_t rows,
                       int32_t partial_rows, int64_t kv_tokens, int32_t num_segs) {
    /* Folded segments are packed into the same KV tiles (hip/attention.hip), so only the
     * item's total pads. */
    (void)num_segs;
    double mem = fg_cost_mem_us(p, s, rows, partial_rows, kv_tokens);
    double cmp = fg_cost_compute_us(p, s, rows, kv_tokens);
    return (mem > cmp ? mem : cmp) + p->task_fixed_us;
}

double fg_cost_step_us(const fg_cost_params *p, double makespan_us, int64_t merge_rows,
                       int32_t num_launches) {
    return makespan_us + (double)num_launches * p->launch_us + (double)merge_rows * p->merge_us_per_row;
}

double fg_cost_floor_us(const fg_cost_params *p, int64_t bytes, double flops) {
    double mem = (double)bytes / (p->copy_gbs * 1e3);
    double mma = flops / (p->mma_tflops_f16 * 1e6);
    return mem > mma ? mem : mma;
}
