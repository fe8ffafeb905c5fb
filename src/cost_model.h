/*
 * Cost model: per-device parameters (from a calibration table or built-in defaults)
 * and the predictions the planner makes with them. Device-agnostic C.
 */
#ifndef FG_COST_MODEL_H
#define FG_COST_MODEL_H

#include <stdint.h>

#include "forgeattn.h"

typedef struct fg_cost_params {
    char arch[32];              /* "sm_90", "gfx90a", "cpu", ... */
    char device[128];           /* device name the table was made on */
    int32_t measured;           /* 1 = measured on the device, 0 = estimated */
    int32_t compute_units;      /* SMs / CUs / CPU threads */
    int32_t blocks_per_unit;    /* resident persistent blocks per unit */
    int32_t warp_size;
    double copy_gbs;            /* device copy bandwidth, GB/s (read + write counted) */
    double gather_eff;          /* fraction of copy_gbs reached gathering 16-token pages */
    double mma_tflops_f16;      /* matrix rate, fp16/bf16 inputs, fp32 accumulation */
    double fma_tflops_f32;      /* non-matrix fp32 rate */
    double task_fixed_us;       /* per task: start-up, Q load, epilogue */
    double launch_us;           /* per kernel launch */
    double merge_us_per_row;    /* merge cost per partial row (q token x head) */
    int32_t tile_kv;            /* KV tokens per tile in the partial kernel */
    int32_t tile_rows;          /* query rows (q tokens x group heads) per row block */
    /* Granularity the kernel pads to: the matrix instruction's M and the KV step. The
     * CPU backend computes exact shapes (1, 1); GPU kernels pad to the whole tile. */
    int32_t pad_rows;
    int32_t pad_kv;
} fg_cost_params;

/* Fill p with the compiled-in defaults for an architecture ("cpu", "sm_80", "sm_90",
 * "gfx908", "gfx90a", "gfx942", anything else = a conservative generic GPU). */
void fg_cost_defaults(const char *arch, int32_t compute_units, int32_t warp_size,
                      fg_cost_params *p);


/* The attention shape constants a task prediction needs (one KV head of one task). */
typedef struct fg_cost_shape {
    int32_t group;                 /* query heads per KV head */
    int32_t head_dim_qk, head_dim_v;
    int32_t q_elem_bytes, kv_elem_bytes;
    int32_t page_size;
} fg_cost_shape;

/* One task (one item for one KV head): `rows` q tokens of which `partial_rows` write a
 * partial state (the others write O directly), `kv_tokens` KV tokens in `num_segs`
 * segments. Microseconds on one persistent block while every block is busy. */
double fg_cost_task_us(const fg_cost_params *p, const fg_cost_shape *s, int32_t rows,
                       int32_t partial_rows, int64_t kv_tokens, int32_t num_segs);
/* The two halves of a task prediction (no fixed cost): memory time for the bytes it
 * moves, and matrix + softmax time for `rows` q tokens against `kv_tokens` keys
 * (padded to pad_rows / pad_kv). A task takes max(memory, compute) + task_fixed_us. */
double fg_cost_mem_us(const fg_cost_params *p, const fg_cost_shape *s, int32_t rows,
                      int32_t partial_rows, int64_t kv_tokens);
double fg_cost_compute_us(const fg_cost_params *p, const fg_cost_shape *s, int32_t rows,
                          int64_t kv_tokens);
/* Fraction of copy bandwidth reached when gathering KV through pages of page_size tokens. */
double fg_cost_gather_eff(const fg_cost_params *p, int32_t page_size);
/* Persistent blocks the device runs at once (compute_units x blocks_per_unit, >= 1). */
int32_t fg_cost_blocks(const fg_cost_params *p);

/* The per-(device, shape) constants of fg_cost_mem_us / fg_cost_compute_us, computed once
 * so that a planner evaluating thousands of tasks skips the repeated divisions. The
 * fast functions evaluate exactly the same expressions on the same values (they are the
 * implementation of the public ones), so their results are bit-identical. */
typedef struct fg_cost_fast {
    fg_cost_shape s;
    int32_t pad_rows, pad_kv;
    double bw;        /* copy bytes per microsecond per block */
    double bw_eff;    /* bw x gather efficiency at the shape's page size */
    double mma_rate;  /* matrix flops per microsecond per block */
    double fma_rate;  /* non-matrix flops per microsecond per block */
} fg_cost_fast;

void fg_cost_fast_init(const fg_cost_params *p, const fg_cost_shape *s, fg_cost_fast *f);

static inline double fg_cost_fast_mem_us(const fg_cost_fast *f, int32_t rows, int32_t partial_rows,
                                         int64_t kv_tokens) {
    const fg_cost_shape *s = &f->s;
    int64_t m = (int64_t)rows * s->group, mp = (int64_t)partial_rows * s->group;
    double kv_bytes = (double)kv_tokens * ((int64_t)s->head_dim_qk + s->head_dim_v) * s->kv_elem_bytes;
    double q_bytes = (double)m * s->head_dim_qk * s->q_elem_bytes;
    double o_bytes = (double)(m - mp) * s->head_dim_v * s->q_elem_bytes + (double)mp * (s->head_dim_v + 1) * 4.0;
    return kv_bytes / f->bw_eff + (q_bytes + o_bytes) / f->bw;
}

static inline double fg_cost_fast_compute_us(const fg_cost_fast *f, int32_t rows, int64_t kv_tokens) {
    const fg_cost_shape *s = &f->s;
    int64_t m = (int64_t)rows * s->group;
    double mp = (double)(f->pad_rows > 1 ? (m + f->pad_rows - 1) / f->pad_rows * f->pad_rows : m);
    double kp = (double)(f->pad_kv > 1 ? (kv_tokens + f->pad_kv - 1) / f->pad_kv * f->pad_kv : kv_tokens);
    double flops = 2.0 * mp * kp * ((double)s->head_dim_qk + s->head_dim_v);
    /* Online softmax: ~8 non-matrix flops per score (scale, max, exp, sum). */
    return flops / f->mma_rate + 8.0 * mp * kp / f->fma_rate;
}

/* Whole-step prediction: the scheduled makespan plus launches plus the merge of
 * merge_rows partial rows (q token x query head, each with its partial count). */
double fg_cost_step_us(const fg_cost_params *p, double makespan_us, int64_t merge_rows,
                       int32_t num_launches);
/* The floor of a step: max(bytes / copy bandwidth, flops / matrix rate), microseconds. */
double fg_cost_floor_us(const fg_cost_params *p, int64_t bytes, double flops);
#endif /* FG_COST_MODEL_H */
