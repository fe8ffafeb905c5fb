/*
 * CPU backend: executes the plan's work list exactly as the GPU kernels do (same items,
 * tasks, partial-state slots and merge order), on a pool of threads. fp32 accumulation,
 * fp16/bf16/fp32 inputs. A KV tile is converted to fp32 once and applied to every query
 * row of the item, which is where sharing pays on a CPU too.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "internal.h"

/* ------------------------------------------------------------ thread pool */

struct fg_thread_pool {
    int32_t num_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    uint64_t generation;
    int32_t busy;
    int stop;
    /* current job */
    int32_t n;
    atomic_int next;
    void (*fn)(void *, int32_t, int32_t);
    void *arg;
};

typedef struct worker_arg {
    fg_thread_pool *pool;
    int32_t id;
} worker_arg;

static void drain(fg_thread_pool *p, int32_t worker) {
    for (;;) {
        int32_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) break;
        p->fn(p->arg, i, worker);
    }
}

static void *worker_main(void *v) {
    worker_arg wa = *(worker_arg *)v;
    free(v);
    fg_thread_pool *p = wa.pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        drain(p, wa.id);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

fg_status fg_thread_pool_create(int32_t num_threads, fg_thread_pool **out) {
    fg_thread_pool *p = calloc(1, sizeof *p);
    if (!p) return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_context_create: out of host memory");
    p->num_threads = num_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)num_threads, sizeof(pthread_t));
    if (!p->threads) { fg_thread_pool_destroy(p); return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_context_create: out of host memory"); }
    for (int32_t i = 1; i < num_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) { p->num_threads = i; fg_thread_pool_destroy(p); return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_context_create: out of host memory"); }
        wa->pool = p;
        wa->id = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->num_threads = i;
            fg_thread_pool_destroy(p);
            return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_context_create: could not start CPU worker thread %d", i);
        }
    }
    *out = p;
    return FG_SUCCESS;
}

void fg_thread_pool_destroy(fg_thread_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int32_t i = 1; i < p->num_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

void fg_thread_pool_run(fg_thread_pool *p, int32_t n, void (*fn)(void *, int32_t, int32_t), void *arg) {
    if (n <= 0) return;
    if (p->num_threads == 1 || n == 1) {
        for (int32_t i = 0; i < n; i++) fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->n = n;
    atomic_store(&p->next, 0);
    p->fn = fn;
    p->arg = arg;
    p->busy = p->num_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------ kernels */

#define CPU_TILE_KV 64   /* KV tokens converted to fp32 at a time */
#define CPU_ROW_BLOCK 32 /* query rows whose scores are live at once */
#define FG_CPU_MAX_DIM 256

static inline float load_elem(const void *base, int64_t i, int32_t dtype) {
    switch (dtype) {
    case FG_DTYPE_FP16: return fg_half_to_float(((const uint16_t *)base)[i]);
    case FG_DTYPE_BF16: return fg_bf16_to_float(((const uint16_t *)base)[i]);
    default: return ((const float *)base)[i];
    }
}

static inline void store_elem(void *base, int64_t i, int32_t dtype, float v) {
    switch (dtype) {
    case FG_DTYPE_FP16: ((uint16_t *)base)[i] = fg_float_to_half(v); break;
    case FG_DTYPE_BF16: ((uint16_t *)base)[i] = fg_float_to_bf16(v); break;
    default: ((float *)base)[i] = v; break;
    }
}

static void load_row(float *dst, const void *base, int64_t off, int32_t n, int32_t dtype, float mul) {
    if (dtype == FG_DTYPE_FP32) {
        const float *s = (const float *)base + off;
        for (int32_t d = 0; d < n; d++) dst[d] = s[d] * mul;
    } else if (dtype == FG_DTYPE_FP16) {
        const uint16_t *s = (const uint16_t *)base + off;
        for (int32_t d = 0; d < n; d++) dst[d] = fg_half_to_float(s[d]) * mul;
    } else {
        const uint16_t *s = (const uint16_t *)base + off;
        for (int32_t d = 0; d < n; d++) dst[d] = fg_bf16_to_float(s[d]) * mul;
    }
}

int64_t fg_cpu_scratch_bytes(const struct fg_plan_s *plan) {
    int64_t m = (int64_t)plan->max_item_rows * plan->group;
    int64_t dqk = plan->attn.head_dim_qk, dv = plan->attn.head_dim_v;
    int64_t floats = m * (dqk + dv + 2) + (int64_t)CPU_TILE_KV * (dqk + dv) +
                     (int64_t)CPU_ROW_BLOCK * CPU_TILE_KV + CPU_TILE_KV;
    return fg_align_up(floats * 4, FG_ALIGN) * plan->ctx->num_threads;
}

typedef struct cpu_job {
    const fg_kernel_args *a;
    int64_t scratch_stride; /* bytes per worker */
} cpu_job;

/* One task: item x KV head g. Rows are processed against each KV tile in row blocks. */
static void run_task(const fg_kernel_args *a, int32_t task, float *scratch) {
    int32_t item = task / a->kv_head_count, g = task % a->kv_head_count;
    int32_t G = a->group, dqk = a->head_dim_qk, dv = a->head_dim_v;
    int32_t kvh = a->kv_head_begin + g;
    int32_t r0 = a->item_row_off[item], nrows = a->item_row_off[item + 1] - r0;
    int32_t M = nrows * G;
    const fg_row *rows = a->row + r0;
    float *q = scratch;                       /* [M][dqk], pre-scaled */
    float *acc = q + (int64_t)M * dqk;        /* [M][dv] */
    float *mx = acc + (int64_t)M * dv;        /* [M] running max */
    float *sum = mx + M;                      /* [M] running sum */
    float *kt = sum + M;                      /* [dqk][TILE], transposed */
    float *vt = kt + (int64_t)CPU_TILE_KV * dqk; /* [TILE][dv] */
    float *s = vt + (int64_t)CPU_TILE_KV * dv;   /* [ROW_BLOCK][TILE] */

    for (int32_t j = 0; j < nrows; j++) {
        for (int32_t k = 0; k < G; k++) {
            int32_t h = kvh * G + k, m = j * G + k;
            load_row(q + (int64_t)m * dqk, a->q,
                     rows[j].qtok * a->q_stride_token + h * a->q_stride_head, dqk, a->q_dtype, a->scale);
            mx[m] = -INFINITY;
            sum[m] = 0.0f;
        }
    }
    memset(acc, 0, sizeof(float) * (size_t)M * (size_t)dv);

    for (int32_t si = a->item_seg_off[item]; si < a->item_seg_off[item + 1]; si++) {
        const fg_work_seg sg = a->seg[si];
        for (int32_t t0 = sg.kv_begin; t0 < sg.kv_end; t0 += CPU_TILE_KV) {
            int32_t tn = sg.kv_end - t0 < CPU_TILE_KV ? sg.kv_end - t0 : CPU_TILE_KV;
            /* Does any row see this tile? (causal limits, rank masks) */
            int any = 0;
            for (int32_t j = 0; j < nrows && !any; j++)
                any = rows[j].rank >= sg.rank_lo && rows[j].rank < sg.rank_hi && rows[j].limit > t0;
            if (!any) continue;
            for (int32_t t = 0; t < tn; t++) {
                int32_t p = t0 + t;
                int64_t page = a->page[sg.page_base + p / a->page_size], slot = p % a->page_size;
                /* K is stored transposed ([d][t]) so that the score loop runs along t
                 * without a floating-point reduction, which the compiler can vectorise. */
                float krow[FG_CPU_MAX_DIM];
                load_row(krow, a->k, page * a->k_stride_page + slot * a->k_stride_token + kvh * a->k_stride_head,
                         dqk, a->kv_dtype, 1.0f);
                for (int32_t d = 0; d < dqk; d++) kt[(int64_t)d * CPU_TILE_KV + t] = krow[d];
                load_row(vt + (int64_t)t * dv, a->v,
                         page * a->v_stride_page + slot * a->v_stride_token + kvh * a->v_stride_head, dv,
                         a->kv_dtype, 1.0f);
            }
            for (int32_t mb = 0; mb < M; mb += CPU_ROW_BLOCK) {
                int32_t mn = M - mb < CPU_ROW_BLOCK ? M - mb : CPU_ROW_BLOCK;
                for (int32_t i = 0; i < mn; i++) {
                    int32_t m = mb + i;
                    const fg_row *rw = &rows[m / G];
                    int32_t vis = tn;
                    if (rw->rank < sg.rank_lo || rw->rank >= sg.rank_hi) vis = 0;
                    else if (rw->limit - t0 < vis) vis = rw->limit - t0 > 0 ? rw->limit - t0 : 0;
                    if (vis == 0) continue;
                    const float *qm = q + (int64_t)m * dqk;
                    float *sm = s + (int64_t)i * CPU_TILE_KV;
                    for (int32_t t = 0; t < CPU_TILE_KV; t++) sm[t] = 0.0f;
                    for (int32_t d = 0; d < dqk; d++) {
                        const float qd = qm[d];
                        const float *kd = kt + (int64_t)d * CPU_TILE_KV;
                        for (int32_t t = 0; t < CPU_TILE_KV; t++) sm[t] += qd * kd[t];
                    }
                    float tmax = -INFINITY;
                    for (int32_t t = 0; t < vis; t++) tmax = sm[t] > tmax ? sm[t] : tmax;
                    float mnew = mx[m] > tmax ? mx[m] : tmax;
                    float corr = expf(mx[m] - mnew); /* exp(-inf) = 0 on the first tile */
                    float *om = acc + (int64_t)m * dv;
                    float l = sum[m] * corr;
                    if (corr != 1.0f)
                        for (int32_t d = 0; d < dv; d++) om[d] *= corr;
                    for (int32_t t = 0; t < vis; t++) {
                        float pr = expf(sm[t] - mnew);
                        l += pr;
                        const float *vr = vt + (int64_t)t * dv;
                        for (int32_t d = 0; d < dv; d++) om[d] += pr * vr[d];
                    }
                    mx[m] = mnew;
                    sum[m] = l;
                }
            }
        }
    }

    int32_t heads = a->kv_head_count * G;
    for (int32_t j = 0; j < nrows; j++) {
        for (int32_t k = 0; k < G; k++) {
            int32_t m = j * G + k, h = kvh * G + k, hl = g * G + k;
            float inv = sum[m] > 0.0f ? 1.0f / sum[m] : 0.0f;
            float lse = sum[m] > 0.0f ? mx[m] + logf(sum[m]) : -INFINITY;
            const float *om = acc + (int64_t)m * dv;
            if (rows[j].slot < 0) {
                int64_t ob = rows[j].qtok * a->o_stride_token + h * a->o_stride_head;
                for (int32_t d = 0; d < dv; d++) store_elem(a->o, ob + d, a->q_dtype, om[d] * inv);
                if (a->lse) a->lse[rows[j].qtok * a->lse_stride_token + h * a->lse_stride_head] = lse;
            } else {
                int64_t sb = (int64_t)rows[j].slot * heads + hl;
                float *po = a->partial_o + sb * dv;
                for (int32_t d = 0; d < dv; d++) po[d] = om[d] * inv;
                a->partial_lse[sb] = lse;
            }
        }
    }
}

static void run_block(void *arg, int32_t b, int32_t worker) {
    const cpu_job *job = arg;
    const fg_kernel_args *a = job->a;
    float *scratch = (float *)((char *)a->scratch + job->scratch_stride * worker);
    for (int32_t i = a->block_task_off[b]; i < a->block_task_off[b + 1]; i++)
        run_task(a, a->block_task[i], scratch);
}

/* Log-sum-exp merge of one q token's partial states, in the listed order. */
static void run_merge(void *arg, int32_t qt, int32_t worker) {
    (void)worker;
    const cpu_job *job = arg;
    const fg_kernel_args *a = job->a;
    int32_t lo = a->merge_off[qt], hi = a->merge_off[qt + 1];
    if (lo == hi) return;
    int32_t heads = a->kv_head_count * a->group, dv = a->head_dim_v;
    for (int32_t hl = 0; hl < heads; hl++) {
        int32_t h = a->kv_head_begin * a->group + hl;
        float m = -INFINITY;
        for (int32_t i = lo; i < hi; i++) {
            float l = a->partial_lse[(int64_t)a->merge_slot[i] * heads + hl];
            m = l > m ? l : m;
        }
        int64_t ob = qt * a->o_stride_token + h * a->o_stride_head;
        if (m == -INFINITY) {
            for (int32_t d = 0; d < dv; d++) store_elem(a->o, ob + d, a->q_dtype, 0.0f);
            if (a->lse) a->lse[qt * a->lse_stride_token + h * a->lse_stride_head] = -INFINITY;
            continue;
        }
        float wsum = 0.0f;
        float o[512];
        for (int32_t d = 0; d < dv; d++) o[d] = 0.0f;
        for (int32_t i = lo; i < hi; i++) {
            int64_t sb = (int64_t)a->merge_slot[i] * heads + hl;
            float w = expf(a->partial_lse[sb] - m);
            wsum += w;
            const float *po = a->partial_o + sb * dv;
            for (int32_t d = 0; d < dv; d++) o[d] += w * po[d];
        }
        float inv = 1.0f / wsum;
        for (int32_t d = 0; d < dv; d++) store_elem(a->o, ob + d, a->q_dtype, o[d] * inv);
        if (a->lse) a->lse[qt * a->lse_stride_token + h * a->lse_stride_head] = m + logf(wsum);
    }
}

fg_status fg_cpu_run(fg_context ctx, const fg_kernel_args *a, int64_t scratch_stride) {
    cpu_job job = {a, scratch_stride};
    fg_thread_pool_run(ctx->pool, a->num_blocks, run_block, &job);
    fg_thread_pool_run(ctx->pool, a->num_qtok, run_merge, &job);
    return FG_SUCCESS;
}
