/*
 * Property guarded: the GPU backend computes the same attention as the double-precision
 * reference (fgtest.h tolerances: fp16 2e-3, bf16 1e-2 on O; 1e-3 on LSE) on random
 * prefix forests (depth up to 6, fan-out up to 64, node lengths not page multiples,
 * GQA groups 1/4/8, q_len 1..8, page sizes 1..64, NHD/HND, padded strides that force
 * the portable path, KV-head sub-ranges, LSE on/off, explicit trees, sharing
 * forced/auto/off), through the public API (fg_plan_create / fg_plan_upload / fg_run);
 * heads outside the plan's range are never written; both kernel paths agree with the
 * reference; runs are bitwise deterministic; and a run captured in a graph replays
 * correctly on fresh inputs. Exits 77 (skipped) when no GPU is present.
 * Run as: test_gpu random fp16|bf16 | portable mixed | edges | determinism | graph
 * Every failure prints the batch seed; FGT_SEED=<seed> re-runs that one batch;
 * FGT_GPU_BATCHES=<n> runs n random batches instead of 60 (40 for portable).
 */
#define _POSIX_C_SOURCE 200112L /* setenv */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fgtest.h"
#include "internal.h"

#ifndef FGT_GPU_BACKEND
#define FGT_GPU_BACKEND FG_BACKEND_CUDA
#endif

int fgt_gpu_stream_create(void **stream);
int fgt_gpu_stream_destroy(void *stream);
int fgt_gpu_capture_begin(void *stream);
int fgt_gpu_capture_end(void *stream, void **exec);
int fgt_gpu_graph_launch(void *exec, void *stream);
int fgt_gpu_graph_destroy(void *exec);

static fg_context g_ctx;
static const char *g_dtype = "fp16";
static void *g_stream;

#define MAC_BUDGET 60000000.0

/* Device copies of one fgt_tensors. */
typedef struct dev_tensors {
    fg_tensors t;
    void *q, *k, *v, *o;
    float *lse;
    size_t q_bytes, k_bytes, v_bytes, o_bytes, lse_bytes;
} dev_tensors;

static const fg_backend_ops *ops(void) { return g_ctx->gpu; }

static void dev_check(fg_status st, const char *what, const char *msg) {
    if (st != FG_SUCCESS) fail_msg("%s: %s: %s", what, fg_status_string(st), msg);
}

static void dev_upload_inputs(dev_tensors *d, const fgt_tensors *h) {
    char msg[256] = "";
    void *s = g_ctx->gpu_state;
    dev_check(ops()->copy(s, d->q, h->q, d->q_bytes, FG_COPY_H2D, g_stream, msg, sizeof msg), "copy q", msg);
    dev_check(ops()->copy(s, d->k, h->k, d->k_bytes, FG_COPY_H2D, g_stream, msg, sizeof msg), "copy k", msg);
    dev_check(ops()->copy(s, d->v, h->v, d->v_bytes, FG_COPY_H2D, g_stream, msg, sizeof msg), "copy v", msg);
    /* Host outputs are poisoned by the generator: the device copies start poisoned too. */
    dev_check(ops()->copy(s, d->o, h->o, d->o_bytes, FG_COPY_H2D, g_stream, msg, sizeof msg), "copy o", msg);
    if (d->lse)
        dev_check(ops()->copy(s, d->lse, h->lse, d->lse_bytes, FG_COPY_H2D, g_stream, msg, sizeof msg), "copy lse", msg);
    dev_check(ops()->synchronize(s, g_stream, msg, sizeof msg), "synchronize", msg);
}

static void dev_alloc(dev_tensors *d, const fg_attn_desc *a, const fgt_tensors *h) {
    char msg[256] = "";
    void *s = g_ctx->gpu_state;
    memset(d, 0, sizeof *d);
    d->q_bytes = h->q_elems * (size_t)fg_dtype_size(a->q_dtype);
    d->k_bytes = h->k_elems * (size_t)fg_dtype_size(a->kv_dtype);
    d->v_bytes = h->v_elems * (size_t)fg_dtype_size(a->kv_dtype);
    d->o_bytes = h->o_elems * (size_t)fg_dtype_size(a->q_dtype);
    d->lse_bytes = h->lse ? h->lse_elems * sizeof(float) : 0;
    dev_check(ops()->alloc(s, &d->q, d->q_bytes, msg, sizeof msg), "alloc q", msg);
    dev_check(ops()->alloc(s, &d->k, d->k_bytes, msg, sizeof msg), "alloc k", msg);
    dev_check(ops()->alloc(s, &d->v, d->v_bytes, msg, sizeof msg), "alloc v", msg);
    dev_check(ops()->alloc(s, &d->o, d->o_bytes, msg, sizeof msg), "alloc o", msg);
    if (h->lse) dev_check(ops()->alloc(s, (void **)&d->lse, d->lse_bytes, msg, sizeof msg), "alloc lse", msg);
    d->t = h->t;
    d->t.q = d->q;
    d->t.k_cache = d->k;
    d->t.v_cache = d->v;
    d->t.o = d->o;
    d->t.lse = d->lse;
    dev_upload_inputs(d, h);
}

static void dev_download(const dev_tensors *d, fgt_tensors *h) {
    char msg[256] = "";
    void *s = g_ctx->gpu_state;
    dev_check(ops()->copy(s, h->o, d->o, d->o_bytes, FG_COPY_D2H, g_stream, msg, sizeof msg), "copy o back", msg);
    if (d->lse)
        dev_check(ops()->copy(s, h->lse, d->lse, d->lse_bytes, FG_COPY_D2H, g_stream, msg, sizeof msg), "copy lse back", msg);
    dev_check(ops()->synchronize(s, g_stream, msg, sizeof msg), "synchronize", msg);
}

static void dev_free(dev_tensors *d) {
    char msg[256] = "";
    void *s = g_ctx->gpu_state;
    void *p[] = {d->q, d->k, d->v, d->o, d->lse};
    for (int i = 0; i < 5; i++)
        if (p[i]) dev_check(ops()->free_(s, p[i], msg, sizeof msg), "free", msg);
}

/* A plan with its device workspace, uploaded. */
typedef struct dev_plan {
    fg_plan plan;
    void *ws;
    size_t ws_bytes;
} dev_plan;

static fg_status dev_plan_make(const fg_attn_desc *a, const fg_batch_desc *bd, dev_plan *p) {
    char msg[256] = "";
    memset(p, 0, sizeof *p);
    fg_status st = fg_plan_create(g_ctx, a, bd, &p->plan);
    if (st != FG_SUCCESS) return st;
    assert_int_equal(fg_plan_workspace_size(p->plan, &p->ws_bytes), FG_SUCCESS);
    dev_check(ops()->alloc(g_ctx->gpu_state, &p->ws, p->ws_bytes, msg, sizeof msg), "alloc workspace", msg);
    /* Poison the workspace: partial states must be written before they are read. */
    dev_check(ops()->memset_(g_ctx->gpu_state, p->ws, 0xff, p->ws_bytes, g_stream, msg, sizeof msg), "memset", msg);
    return fg_plan_upload(p->plan, p->ws, p->ws_bytes, g_stream);
}

static void dev_plan_free(dev_plan *p) {
    char msg[256] = "";
    if (p->ws) dev_check(ops()->free_(g_ctx->gpu_state, p->ws, msg, sizeof msg), "free workspace", msg);
    fg_plan_destroy(p->plan);
}

static void check_against_reference(const char *label, const fg_attn_desc *a, const fgt_batch *b,
                                    const fgt_tensors *t) {
    size_t n = (size_t)b->num_q_tokens * (size_t)a->num_q_heads;
    double *o_ref = malloc(sizeof(double) * n * (size_t)a->head_dim_v);
    double *lse_ref = malloc(sizeof(double) * n);
    assert_true(o_ref && lse_ref);
    assert_int_equal(fgt_reference(a, b, t, o_ref, lse_ref), 0);
    fgt_cmp cmp;
    /* Tolerances are fgtest.h's, per dtype: fp16 2e-3 / bf16 1e-2 abs on O, 1e-3 on LSE. */
    if (fgt_compare(a, b, t, o_ref, lse_ref, &cmp)) fail_msg("%s: %s", label, cmp.msg);
    char msg[256];
    if (!fgt_outside_untouched(a, b, t, msg, sizeof msg)) fail_msg("%s: %s", label, msg);
    free(o_ref);
    free(lse_ref);
}

/* Plan, upload, run on the device, copy back, compare. */
static void gpu_check(const char *label, const fg_attn_desc *a, const fgt_batch *b, uint32_t flags,
                      int use_tree, fgt_tensors *t) {
    fg_batch_desc bd = b->desc;
    bd.flags = flags;
    bd.tree = use_tree && b->has_tree ? &b->tree : NULL;
    dev_tensors d;
    dev_alloc(&d, a, t);
    dev_plan p;
    fg_status st = dev_plan_make(a, &bd, &p);
    if (st != FG_SUCCESS) fail_msg("%s: plan: %s: %s", label, fg_status_string(st), fg_last_error());
    st = fg_run(p.plan, &d.t, p.ws, p.ws_bytes, g_stream);
    if (st != FG_SUCCESS) fail_msg("%s: fg_run: %s: %s", label, fg_status_string(st), fg_last_error());
    dev_download(&d, t);
    check_against_reference(label, a, b, t);
    dev_plan_free(&p);
    dev_free(&d);
}

static int32_t pick(fgt_rng *rng, const int32_t *v, int32_t n) { return v[fgt_rng_range(rng, 0, n - 1)]; }

static fg_dtype pick_dtype(fgt_rng *rng, const char *which) {
    if (!strcmp(which, "fp16")) return FG_DTYPE_FP16;
    if (!strcmp(which, "bf16")) return FG_DTYPE_BF16;
    return (fg_dtype)fgt_rng_range(rng, 1, 2);
}

static void random_check(uint64_t seed, const char *which) {
    fgt_rng rng;
    fgt_rng_seed(&rng, seed);
    fg_attn_desc a;
    memset(&a, 0, sizeof a);
    static const int32_t groups[] = {1, 4, 8};
    int32_t group = pick(&rng, groups, 3);
    a.num_kv_heads = fgt_rng_range(&rng, 1, group == 1 ? 4 : 2);
    a.num_q_heads = group * a.num_kv_heads;
    a.layout = a.num_kv_heads == 1 && group > 1 ? FG_LAYOUT_MQA : group == 1 ? FG_LAYOUT_MHA : FG_LAYOUT_GQA;
    static const int32_t dims[] = {64, 128, 128, 256};
    a.head_dim_qk = a.head_dim_v = a.num_q_heads <= 4 ? pick(&rng, dims, 4) : pick(&rng, dims, 3);
    a.q_dtype = a.kv_dtype = pick_dtype(&rng, which);
    static const int32_t pages[] = {1, 2, 3, 7, 16, 16, 16, 32, 64};
    a.page_size = pick(&rng, pages, 9);
    a.scale = fgt_rng_range(&rng, 0, 3) == 0 ? (float)(0.05 + 0.2 * fgt_rng_uniform(&rng)) : 0.0f;
    if (a.num_kv_heads > 1 && fgt_rng_range(&rng, 0, 2) == 0) {
        a.kv_head_begin = fgt_rng_range(&rng, 0, a.num_kv_heads - 1);
        a.kv_head_count = fgt_rng_range(&rng, 0, a.num_kv_heads - a.kv_head_begin);
    }
    fgt_tensor_opts topt;
    memset(&topt, 0, sizeof topt);
    /* pad 8 keeps 16-byte rows (matrix path); 1..5 breaks them (portable path). */
    int32_t padk = fgt_rng_range(&rng, 0, 5);
    topt.pad = padk == 0 ? fgt_rng_range(&rng, 1, 5) : padk == 1 ? 8 : 0;
    topt.hnd = fgt_rng_range(&rng, 0, 2) == 0;
    topt.no_lse = fgt_rng_range(&rng, 0, 3) == 0;
    int32_t f = fgt_rng_range(&rng, 0, 7);
    uint32_t flags = f < 4 ? FG_BATCH_FORCE_SHARING : (f < 6 ? 0 : FG_BATCH_NO_SHARING);
    float scale_override = fgt_rng_range(&rng, 0, 7) == 0 ? 0.3f : 0.0f;
    fgt_forest_params p = {
        .num_roots = fgt_rng_range(&rng, 1, 3),
        .max_depth = fgt_rng_range(&rng, 1, 6),
        .max_fanout = fgt_rng_range(&rng, 0, 3) == 0 ? 64 : fgt_rng_range(&rng, 1, 16),
        .min_node_len = 1,
        .max_node_len = fgt_rng_range(&rng, 0, 2) == 0 ? 4096 : fgt_rng_range(&rng, 1, 600),
        .page_size = a.page_size,
        .max_q_len = 8,
        .max_requests = fgt_rng_range(&rng, 1, 64),
        .with_tree = 1,
    };
    int use_tree = fgt_rng_range(&rng, 0, 5) == 0;
    fgt_forest_opts o = {.max_work = (int64_t)(MAC_BUDGET / ((double)a.num_q_heads * 2 * a.head_dim_qk))};
    fgt_batch b;
    if (fgt_batch_random_ex(&rng, &p, &o, &b)) fail_msg("seed %llu: batch generation failed", (unsigned long long)seed);
    fgt_tensors t;
    if (fgt_tensors_random_ex(&rng, &a, &b, &topt, &t)) fail_msg("seed %llu: tensor allocation failed", (unsigned long long)seed);
    t.t.scale_override = scale_override;
    char label[384];
    snprintf(label, sizeof label,
             "seed %llu (%s: R=%d nq=%d heads %d/%d [%d,+%d) d=%d %s ps=%d pad=%d %s lse=%d flags=%u tree=%d)",
             (unsigned long long)seed, which, b.desc.num_requests, b.num_q_tokens, a.num_q_heads, a.num_kv_heads,
             a.kv_head_begin, a.kv_head_count, a.head_dim_qk, a.q_dtype == FG_DTYPE_FP16 ? "fp16" : "bf16",
             a.page_size, topt.pad, topt.hnd ? "HND" : "NHD", !topt.no_lse, flags, use_tree);
    gpu_check(label, &a, &b, flags, use_tree, &t);
    fgt_tensors_free(&t);
    fgt_batch_free(&b);
}

static uint64_t base_seed(const char *which) {
    uint64_t h = 1469598103934665603ull;
    for (const char *s = which; *s; s++) h = (h ^ (uint64_t)(unsigned char)*s) * 1099511628211ull;
    return h & 0xffffffffull;
}

static void t_random(void **state) {
    (void)state;
    const char *env = getenv("FGT_SEED");
    if (env) {
        random_check(strtoull(env, NULL, 0), g_dtype);
        return;
    }
    int n = !strcmp(g_dtype, "mixed") ? 40 : 60;
    /* Fewer batches under compute-sanitizer, which slows kernels 10-100x. */
    const char *nb = getenv("FGT_GPU_BATCHES");
    if (nb && atoi(nb) > 0) n = atoi(nb);
    uint64_t s0 = (base_seed(g_dtype) << 16) ^ 0x6770u;
    for (int i = 0; i < n; i++) random_check(s0 + (uint64_t)i, g_dtype);
}

/* Hand-made shapes the random draw reaches rarely: a node spanning many pages under one
 * request, 3+ requests under one node (parent offsets), a fan-out wider than one row
 * block (sharers straddling row blocks), a q token with many partial states, and a
 * tensor-parallel head slice. */
static void t_edges(void **state) {
    (void)state;
    fgt_rng rng;
    fgt_rng_seed(&rng, 4242);
    static const fg_dtype dts[] = {FG_DTYPE_FP16, FG_DTYPE_BF16};
    for (int di = 0; di < 2; di++) {
        /* 1. One request, one long node over many pages, q_len 4 (causal rows). */
        {
            fg_attn_desc a = {.num_q_heads = 8, .num_kv_heads = 2, .layout = FG_LAYOUT_GQA,
                              .head_dim_qk = 128, .head_dim_v = 128, .q_dtype = dts[di],
                              .kv_dtype = dts[di], .page_size = 16};
            int32_t q_len[1] = {4}, kv_len[1] = {3001}, indptr[2] = {0, 188};
            int32_t idx[188];
            for (int i = 0; i < 188; i++) idx[i] = (i * 37) % 200;
            fgt_batch b;
            assert_int_equal(fgt_batch_from_arrays(1, q_len, kv_len, indptr, idx, 200, &b), 0);
            fgt_tensors t;
            assert_int_equal(fgt_tensors_random(&rng, &a, &b, 0, &t), 0);
            gpu_check("edges: one long node", &a, &b, 0, 0, &t);
            fgt_tensors_free(&t);
            fgt_batch_free(&b);
        }
        /* 2. 80 requests share a 700-token prefix (GQA 8: 640 rows, 10 row blocks), each
         *    with a 1..40 token tail; forced sharing, then head slice [1, +1). */
        for (int slice = 0; slice < 2; slice++) {
            fg_attn_desc a = {.num_q_heads = 16, .num_kv_heads = 2, .layout = FG_LAYOUT_GQA,
                              .head_dim_qk = 64, .head_dim_v = 64, .q_dtype = dts[di],
                              .kv_dtype = dts[di], .page_size = 16,
                              .kv_head_begin = slice, .kv_head_count = slice};
            enum { R = 80, PREFIX_PAGES = 44 };
            int32_t q_len[R], kv_len[R], indptr[R + 1];
            static int32_t idx[R * 48];
            int32_t next = PREFIX_PAGES, n = 0;
            indptr[0] = 0;
            for (int r = 0; r < R; r++) {
                q_len[r] = 1 + r % 3;
                kv_len[r] = 700 + 1 + (r * 7) % 40; /* prefix ends mid-page: 700 = 43.75 pages */
                int pages = (kv_len[r] + 15) / 16;
                for (int i = 0; i < pages; i++) idx[n++] = i < 43 ? i : next++;
                indptr[r + 1] = n;
            }
            fgt_batch b;
            assert_int_equal(fgt_batch_from_arrays(R, q_len, kv_len, indptr, idx, next, &b), 0);
            fgt_tensors t;
            assert_int_equal(fgt_tensors_random(&rng, &a, &b, 0, &t), 0);
            gpu_check(slice ? "edges: shared prefix, head slice" : "edges: shared prefix", &a, &b,
                      FG_BATCH_FORCE_SHARING, 0, &t);
            fgt_tensors_free(&t);
            fgt_batch_free(&b);
        }
    }
}

/* A random batch, its tensors on the device, and its shared-prefix plan uploaded: the
 * setting of the determinism and graph tests. */
typedef struct forced_case {
    fgt_batch b;
    fgt_tensors t;
    dev_tensors d;
    dev_plan pl;
} forced_case;

static void forced_case_make(fgt_rng *rng, const fg_attn_desc *a, const fgt_forest_params *p, forced_case *c) {
    assert_int_equal(fgt_batch_random(rng, p, &c->b), 0);
    assert_int_equal(fgt_tensors_random(rng, a, &c->b, 0, &c->t), 0);
    dev_alloc(&c->d, a, &c->t);
    fg_batch_desc bd = c->b.desc;
    bd.flags = FG_BATCH_FORCE_SHARING;
    assert_int_equal(dev_plan_make(a, &bd, &c->pl), FG_SUCCESS);
}

static void forced_case_free(forced_case *c) {
    dev_plan_free(&c->pl);
    dev_free(&c->d);
    fgt_tensors_free(&c->t);
    fgt_batch_free(&c->b);
}

/* Runs of one plan on one input give bitwise identical O and LSE: twice with the default
 * kernels, then once with the merge fused into the partial kernel. */
static void t_determinism(void **state) {
    (void)state;
    fgt_rng rng;
    fgt_rng_seed(&rng, 777);
    fg_attn_desc a = {.num_q_heads = 32, .num_kv_heads = 8, .layout = FG_LAYOUT_GQA, .head_dim_qk = 128,
                      .head_dim_v = 128, .q_dtype = FG_DTYPE_FP16, .kv_dtype = FG_DTYPE_FP16, .page_size = 16};
    fgt_forest_params p = {.num_roots = 2, .max_depth = 4, .max_fanout = 16, .min_node_len = 1,
                           .max_node_len = 3000, .page_size = 16, .max_q_len = 4, .max_requests = 48,
                           .with_tree = 0};
    forced_case c;
    forced_case_make(&rng, &a, &p, &c);
    fgt_batch *const b = &c.b;
    fgt_tensors *const t = &c.t;
    dev_tensors *const d = &c.d;
    dev_plan *const pl = &c.pl;
    fg_plan_stats st;
    assert_int_equal(fg_plan_stats_get(pl->plan, &st), FG_SUCCESS);
    unsigned char *o1 = malloc(d->o_bytes), *l1 = malloc(d->lse_bytes);
    assert_true(o1 && l1);
    fg_context other = NULL;
    for (int rep = 0; rep < 3; rep++) {
        if (rep == 2) {
            /* The merge fused into the partial kernel (FG_GPU_FUSED_MERGE=1, CUDA sm80+; read
             * when a context opens, the selection is process-wide) must give the same bits
             * as the default separate merge kernel. Elsewhere this is the default again. */
            setenv("FG_GPU_FUSED_MERGE", "1", 1);
            fg_context_options opts;
            fg_context_options_init(&opts);
            opts.backend = FGT_GPU_BACKEND;
            assert_int_equal(fg_context_create(&opts, &other), FG_SUCCESS);
            unsetenv("FG_GPU_FUSED_MERGE");
        }
        fgt_tensors_poison_output(&a, t);
        dev_upload_inputs(d, t);
        assert_int_equal(fg_run(pl->plan, &d->t, pl->ws, pl->ws_bytes, g_stream), FG_SUCCESS);
        dev_download(d, t);
        if (rep == 0) {
            check_against_reference("determinism", &a, b, t);
            memcpy(o1, t->o, d->o_bytes);
            memcpy(l1, t->lse, d->lse_bytes);
        } else {
            assert_memory_equal(o1, t->o, d->o_bytes);
            assert_memory_equal(l1, t->lse, d->lse_bytes);
        }
    }
    if (other) fg_context_destroy(other);
    printf("determinism: %d partial slots merged, %d tasks (3rd run: fused merge)\n",
           st.num_partials, st.num_tasks);
    free(o1);
    free(l1);
    forced_case_free(&c);
}

/* fg_run captured into a graph: nothing runs at capture, the replay is right, and a
 * second replay on fresh inputs (same buffers) is right too. */
static void t_graph(void **state) {
    (void)state;
    fgt_rng rng;
    fgt_rng_seed(&rng, 99);
    fg_attn_desc a = {.num_q_heads = 16, .num_kv_heads = 4, .layout = FG_LAYOUT_GQA, .head_dim_qk = 128,
                      .head_dim_v = 128, .q_dtype = FG_DTYPE_BF16, .kv_dtype = FG_DTYPE_BF16, .page_size = 16};
    fgt_forest_params p = {.num_roots = 1, .max_depth = 3, .max_fanout = 8, .min_node_len = 1,
                           .max_node_len = 2000, .page_size = 16, .max_q_len = 2, .max_requests = 32,
                           .with_tree = 0};
    forced_case c;
    forced_case_make(&rng, &a, &p, &c);
    fgt_batch *const b = &c.b;
    fgt_tensors *const t = &c.t;
    dev_tensors *const d = &c.d;
    dev_plan *const pl = &c.pl;
    char msg[256] = "";
    dev_check(ops()->synchronize(g_ctx->gpu_state, g_stream, msg, sizeof msg), "synchronize", msg);

    assert_int_equal(fgt_gpu_capture_begin(g_stream), 0);
    fg_status st = fg_run(pl->plan, &d->t, pl->ws, pl->ws_bytes, g_stream);
    void *exec = NULL;
    assert_int_equal(fgt_gpu_capture_end(g_stream, &exec), 0);
    if (st != FG_SUCCESS) fail_msg("fg_run under capture: %s: %s", fg_status_string(st), fg_last_error());
    dev_download(d, t);
    /* Still poisoned: capture recorded the kernels without running them. */
    uint16_t o0;
    memcpy(&o0, t->o, 2);
    assert_true((o0 & 0x7f80u) == 0x7f80u && (o0 & 0x7fu) != 0); /* bf16 NaN */

    for (int rep = 0; rep < 2; rep++) {
        if (rep) {
            fgt_tensors_refill(&rng, &a, b, t);
            dev_upload_inputs(d, t);
        }
        assert_int_equal(fgt_gpu_graph_launch(exec, g_stream), 0);
        dev_download(d, t);
        check_against_reference(rep ? "graph replay, fresh inputs" : "graph replay", &a, b, t);
        fgt_tensors_poison_output(&a, t);
        dev_upload_inputs(d, t);
    }
    assert_int_equal(fgt_gpu_graph_destroy(exec), 0);
    forced_case_free(&c);
}

static int setup(void **state) {
    (void)state;
    return fgt_gpu_stream_create(&g_stream);
}
static int teardown(void **state) {
    (void)state;
    return fgt_gpu_stream_destroy(g_stream);
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "random";
    if (!strcmp(which, "portable")) setenv("FG_GPU_KERNEL", "portable", 1);
    fg_context_options opts;
    fg_context_options_init(&opts);
    opts.backend = FGT_GPU_BACKEND;
    fg_status st = fg_context_create(&opts, &g_ctx);
    if (st == FG_ERR_NO_DEVICE) {
        printf("skipped: %s\n", fg_last_error());
        return 77;
    }
    if (st != FG_SUCCESS) {
        fprintf(stderr, "fg_context_create: %s: %s\n", fg_status_string(st), fg_last_error());
        return 1;
    }
    fg_context_info info;
    if (fg_context_info_get(g_ctx, &info) == FG_SUCCESS)
        printf("device: %s (%s, %d units, warp %d)\n", info.device_name, info.arch, info.compute_units, info.warp_size);
    int rc = 2;
    char name[64];
    if (!strcmp(which, "random") || !strcmp(which, "portable")) {
        g_dtype = argc > 2 ? argv[2] : "fp16";
        snprintf(name, sizeof name, "gpu.%s.%s", which, g_dtype);
        const struct CMUnitTest t[] = {cmocka_unit_test(t_random)};
        rc = cmocka_run_group_tests_name(name, t, setup, teardown);
    } else if (!strcmp(which, "edges")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(t_edges)};
        rc = cmocka_run_group_tests_name("gpu.edges", t, setup, teardown);
    } else if (!strcmp(which, "determinism")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(t_determinism)};
        rc = cmocka_run_group_tests_name("gpu.determinism", t, setup, teardown);
    } else if (!strcmp(which, "graph")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(t_graph)};
        rc = cmocka_run_group_tests_name("gpu.graph", t, setup, teardown);
    } else {
        fprintf(stderr, "usage: %s random fp16|bf16 | portable mixed | edges | determinism | graph\n", argv[0]);
    }
    fg_context_destroy(g_ctx);
    return rc;
}
