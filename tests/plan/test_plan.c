/*
 * Property guarded: whatever plan the library builds (shared-prefix or plain split-KV,
 * any division and schedule), the CPU backend's output equals the double-precision
 * reference within the dtype's stated tolerance (fgtest.h), on random prefix forests
 * (depth up to 6, fan-out up to 64, node lengths 1..4096 that are not page multiples,
 * GQA groups 1/4/8/32, q_len 1..8, fp32/fp16/bf16, page sizes 1..64, NHD/HND, padded
 * strides, KV-head sub-ranges, LSE on/off, explicit trees, sharing forced/auto/off);
 * heads outside the plan's KV-head range are never written; runs are bitwise
 * deterministic; and the DESIGN.md workloads W1..W5 (small scale) are correct with
 * stats that match their arithmetic.
 * Run as: test_plan random fp32|fp16|bf16|mixed | determinism | workloads | edges
 * Every failure prints the batch seed; FGT_SEED=<seed> re-runs that one batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fgtest.h"
#include "workloads.h"

static fg_context g_ctx;
static const char *g_dtype = "fp32";

/* Reference MACs allowed per batch: keeps each ctest entry well under a minute on two
 * cores (and a few minutes under the sanitizers). */
#define MAC_BUDGET 150000000.0

typedef struct check_cfg {
    fg_attn_desc a;
    fgt_tensor_opts topt;
    uint32_t flags;
    int use_tree;
    float scale_override;
} check_cfg;

/* Plan, run, compare with the reference; check untouched heads. Returns the stats. */
static void run_and_check(const char *label, const check_cfg *c, const fgt_batch *b, fgt_rng *rng,
                          fg_plan_stats *stats) {
    fgt_batch bb = *b; /* shallow: only desc flags/tree change */
    bb.desc.flags = c->flags;
    bb.desc.tree = c->use_tree && b->has_tree ? &b->tree : NULL;
    fgt_tensors t;
    if (fgt_tensors_random_ex(rng, &c->a, b, &c->topt, &t)) fail_msg("%s: tensor allocation failed", label);
    t.t.scale_override = c->scale_override;
    fg_plan_stats st_local;
    fg_status st = fgt_run_cpu(g_ctx, &c->a, &bb, &t, stats ? stats : &st_local);
    if (st != FG_SUCCESS) fail_msg("%s: run failed: %s: %s", label, fg_status_string(st), fg_last_error());
    size_t n = (size_t)b->num_q_tokens * (size_t)c->a.num_q_heads;
    double *o_ref = malloc(sizeof(double) * n * (size_t)c->a.head_dim_v);
    double *lse_ref = malloc(sizeof(double) * n);
    assert_true(o_ref && lse_ref);
    assert_int_equal(fgt_reference(&c->a, b, &t, o_ref, lse_ref), 0);
    fgt_cmp cmp;
    if (fgt_compare(&c->a, b, &t, o_ref, lse_ref, &cmp))
        fail_msg("%s: %s", label, cmp.msg);
    char msg[256];
    if (!fgt_outside_untouched(&c->a, b, &t, msg, sizeof msg)) fail_msg("%s: %s", label, msg);
    free(o_ref);
    free(lse_ref);
    fgt_tensors_free(&t);
}

static fg_dtype pick_dtype(fgt_rng *rng, const char *which) {
    if (!strcmp(which, "fp32")) return FG_DTYPE_FP32;
    if (!strcmp(which, "fp16")) return FG_DTYPE_FP16;
    if (!strcmp(which, "bf16")) return FG_DTYPE_BF16;
    return (fg_dtype)fgt_rng_range(rng, 0, 2);
}

static int32_t pick(fgt_rng *rng, const int32_t *v, int32_t n) { return v[fgt_rng_range(rng, 0, n - 1)]; }

/* One random check: everything drawn from the seed, so a failure replays. */
static void random_check(uint64_t seed, const char *which) {
    fgt_rng rng;
    fgt_rng_seed(&rng, seed);
    check_cfg c;
    memset(&c, 0, sizeof c);
    fg_attn_desc *a = &c.a;
    static const int32_t groups[] = {1, 4, 8, 32};
    int32_t group = pick(&rng, groups, 4);
    a->num_kv_heads = group == 32 ? 1 : fgt_rng_range(&rng, 1, group == 1 ? 4 : 2);
    a->num_q_heads = group * a->num_kv_heads;
    a->layout = group == 1 ? (a->num_kv_heads == 1 && fgt_rng_range(&rng, 0, 1) ? FG_LAYOUT_MQA : FG_LAYOUT_MHA)
                           : (a->num_kv_heads == 1 && fgt_rng_range(&rng, 0, 1) ? FG_LAYOUT_MQA : FG_LAYOUT_GQA);
    /* Head dims: wide ones only with few query heads (budget). */
    static const int32_t dims_small[] = {8, 16, 32, 64}, dims_all[] = {8, 16, 32, 64, 128, 256};
    a->head_dim_qk = a->num_q_heads <= 4 ? pick(&rng, dims_all, 6) : pick(&rng, dims_small, 4);
    a->head_dim_v = fgt_rng_range(&rng, 0, 2) ? a->head_dim_qk
                    : (a->num_q_heads <= 4 ? pick(&rng, dims_all, 6) : pick(&rng, dims_small, 4));
    a->q_dtype = pick_dtype(&rng, which);
    a->kv_dtype = !strcmp(which, "mixed") ? (fg_dtype)fgt_rng_range(&rng, 0, 2) : a->q_dtype;
    static const int32_t pages[] = {1, 2, 3, 7, 16, 16, 16, 32, 64};
    a->page_size = pick(&rng, pages, 9);
    a->scale = fgt_rng_range(&rng, 0, 3) == 0 ? (float)(0.05 + 0.2 * fgt_rng_uniform(&rng)) : 0.0f;
    if (a->num_kv_heads > 1 && fgt_rng_range(&rng, 0, 2) == 0) { /* tensor-parallel slice */
        a->kv_head_begin = fgt_rng_range(&rng, 0, a->num_kv_heads - 1);
        a->kv_head_count = fgt_rng_range(&rng, 0, a->num_kv_heads - a->kv_head_begin);
    }
    c.topt.pad = fgt_rng_range(&rng, 0, 3) == 0 ? fgt_rng_range(&rng, 1, 5) : 0;
    c.topt.hnd = fgt_rng_range(&rng, 0, 2) == 0;
    c.topt.no_lse = fgt_rng_range(&rng, 0, 3) == 0;
    int32_t f = fgt_rng_range(&rng, 0, 7);
    c.flags = f < 4 ? FG_BATCH_FORCE_SHARING : (f < 6 ? 0 : FG_BATCH_NO_SHARING);
    c.scale_override = fgt_rng_range(&rng, 0, 7) == 0 ? 0.3f : 0.0f;

    fgt_forest_params p = {
        .num_roots = fgt_rng_range(&rng, 1, 3),
        .max_depth = fgt_rng_range(&rng, 1, 6),
        .max_fanout = fgt_rng_range(&rng, 0, 3) == 0 ? 64 : fgt_rng_range(&rng, 1, fgt_rng_range(&rng, 0, 1) ? 3 : 16),
        .min_node_len = 1,
        .max_node_len = fgt_rng_range(&rng, 0, 2) == 0 ? 4096 : fgt_rng_range(&rng, 1, 600),
        .page_size = a->page_size,
        .max_q_len = 8,
        .max_requests = fgt_rng_range(&rng, 1, 64),
        .with_tree = 1,
    };
    c.use_tree = fgt_rng_range(&rng, 0, 5) == 0;
    fgt_forest_opts o = {
        .max_work = (int64_t)(MAC_BUDGET / ((double)a->num_q_heads * (a->head_dim_qk + a->head_dim_v))),
    };
    if (fgt_rng_range(&rng, 0, 4) == 0) { /* one in five: deep, narrow trees (depth 6) */
        p.max_depth = 6;
        p.max_fanout = fgt_rng_range(&rng, 1, 3);
        p.max_node_len = fgt_rng_range(&rng, 1, 700);
        o.expand_pct = 95;
    }
    fgt_batch b;
    if (fgt_batch_random_ex(&rng, &p, &o, &b)) fail_msg("seed %llu: batch generation failed", (unsigned long long)seed);
    char label[384];
    snprintf(label, sizeof label,
             "seed %llu (%s: R=%d nq=%d heads %d/%d [%d,+%d) d=%d/%d %s/%s ps=%d pad=%d %s lse=%d flags=%u tree=%d)",
             (unsigned long long)seed, which, b.desc.num_requests, b.num_q_tokens, a->num_q_heads,
             a->num_kv_heads, a->kv_head_begin, a->kv_head_count, a->head_dim_qk, a->head_dim_v,
             (const char *[]){"fp32", "fp16", "bf16"}[a->q_dtype], (const char *[]){"fp32", "fp16", "bf16"}[a->kv_dtype],
             a->page_size, c.topt.pad, c.topt.hnd ? "HND" : "NHD", !c.topt.no_lse, c.flags, c.use_tree);
    fg_plan_stats s;
    run_and_check(label, &c, &b, &rng, &s);
    if (getenv("FGT_VERBOSE")) /* what the batch exercised, to keep the generator honest */
        print_message("%s: nodes %d depth %d unique %lld of %lld tokens, cow pages %d, items %d partials %d "
                      "sharing %d\n", label, s.num_nodes, s.max_depth, (long long)s.unique_kv_tokens,
                      (long long)s.nonshared_kv_tokens, b.num_alias, s.num_items, s.num_partials, s.sharing_used);
    fgt_batch_free(&b);
}

static uint64_t base_seed(const char *which) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a: a stable seed per entry */
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
    /* 60 + 60 + 50 + 40 = 210 random batches over the four entries. */
    int n = !strcmp(g_dtype, "fp32") ? 60 : !strcmp(g_dtype, "fp16") ? 60 : !strcmp(g_dtype, "bf16") ? 50 : 40;
    uint64_t s0 = base_seed(g_dtype) << 16;
    for (int i = 0; i < n; i++) random_check(s0 + (uint64_t)i, g_dtype);
}

/* ------------------------------------------------------------- determinism */

static void t_determinism(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        fgt_rng rng;
        fgt_rng_seed(&rng, 0xde7e0000 + seed);
        fg_attn_desc a = {.num_q_heads = 8, .num_kv_heads = 2, .layout = FG_LAYOUT_GQA, .head_dim_qk = 32,
                          .head_dim_v = 32, .q_dtype = (fg_dtype)(seed % 3), .kv_dtype = (fg_dtype)(seed % 3),
                          .page_size = 16};
        fgt_forest_params p = {.num_roots = 2, .max_depth = 4, .max_fanout = 16, .min_node_len = 1,
                               .max_node_len = 2000, .page_size = 16, .max_q_len = 4, .max_requests = 48};
        fgt_forest_opts o = {.max_work = 150000};
        fgt_batch b;
        assert_int_equal(fgt_batch_random_ex(&rng, &p, &o, &b), 0);
        b.desc.flags = seed % 2 ? FG_BATCH_FORCE_SHARING : 0;
        fgt_tensors t;
        assert_int_equal(fgt_tensors_random(&rng, &a, &b, 0, &t), 0);
        size_t osz = t.o_elems * (a.q_dtype == FG_DTYPE_FP32 ? 4 : 2);
        fg_plan plan;
        assert_int_equal(fg_plan_create(g_ctx, &a, &b.desc, &plan), FG_SUCCESS);
        size_t ws;
        assert_int_equal(fg_plan_workspace_size(plan, &ws), FG_SUCCESS);
        void *w = aligned_alloc(256, (ws + 255) / 256 * 256);
        assert_non_null(w);
        assert_int_equal(fg_plan_upload(plan, w, ws, NULL), FG_SUCCESS);
        assert_int_equal(fg_run(plan, &t.t, w, ws, NULL), FG_SUCCESS);
        void *o1 = malloc(osz), *l1 = malloc(t.lse_elems * 4);
        assert_true(o1 && l1);
        memcpy(o1, t.o, osz);
        memcpy(l1, t.lse, t.lse_elems * 4);
        for (int rep = 0; rep < 3; rep++) { /* same plan again, and a fresh plan */
            fgt_tensors_poison_output(&a, &t);
            if (rep == 2) {
                fg_plan p2;
                assert_int_equal(fg_plan_create(g_ctx, &a, &b.desc, &p2), FG_SUCCESS);
                fg_plan_destroy(plan);
                plan = p2;
                assert_int_equal(fg_plan_upload(plan, w, ws, NULL), FG_SUCCESS);
            }
            assert_int_equal(fg_run(plan, &t.t, w, ws, NULL), FG_SUCCESS);
            if (memcmp(o1, t.o, osz) != 0 || memcmp(l1, t.lse, t.lse_elems * 4) != 0)
                fail_msg("determinism seed %llu: run %d differs bitwise from the first", (unsigned long long)seed, rep + 2);
        }
        free(o1);
        free(l1);
        free(w);
        fg_plan_destroy(plan);
        fgt_tensors_free(&t);
        fgt_batch_free(&b);
    }
}

/* ------------------------------------------------------------- workloads */

static void t_workloads(void **state) {
    (void)state;
    const int32_t scale = 32;
    for (int id = 0; id < FGT_NUM_WORKLOADS; id++) {
        fg_attn_desc a;
        fgt_batch b;
        assert_int_equal(fgt_batch_workload(id, scale, &a, &b), 0);
        fgt_forest_expect e;
        assert_int_equal(fgt_expected_forest(&b, a.page_size, &e), 0);
        /* The arithmetic of each workload at this scale (lengths / 32, see workloads.h). */
        int64_t uniq = 0, total = 0;
        switch (id) {
        case FGT_W1_N16: uniq = 256 + 16 * 8; total = 16 * (256 + 8); break;
        case FGT_W1_N32: uniq = 256 + 32 * 8; total = 32 * (256 + 8); break;
        case FGT_W2: uniq = 2 * (128 + 16 * 16); total = 2 * 16 * (128 + 16); break;
        case FGT_W3: uniq = 64 + 4 * 64 + 64 * 8; total = 64 * (64 + 64 + 8); break;
        case FGT_W4: uniq = total = e.total_tokens; assert_int_equal(b.desc.num_requests, 8); break;
        case FGT_W5: uniq = 32 + 16 * 2; total = 16 * (32 + 2); break;
        }
        if (e.unique_tokens != uniq || e.total_tokens != total)
            fail_msg("%s: unique/total tokens %lld/%lld, arithmetic says %lld/%lld", fgt_workload_name(id),
                     (long long)e.unique_tokens, (long long)e.total_tokens, (long long)uniq, (long long)total);
        for (int mode = 0; mode < 2; mode++) {
            check_cfg c;
            memset(&c, 0, sizeof c);
            c.a = a;
            c.flags = mode ? FG_BATCH_NO_SHARING : FG_BATCH_FORCE_SHARING;
            fgt_rng rng;
            fgt_rng_seed(&rng, 0x3000 + (uint64_t)id);
            char label[96];
            snprintf(label, sizeof label, "%s (scale %d, %s)", fgt_workload_name(id), scale,
                     mode ? "no sharing" : "sharing");
            fg_plan_stats s;
            run_and_check(label, &c, &b, &rng, &s);
            int64_t per_tok = (int64_t)a.num_kv_heads * (a.head_dim_qk + a.head_dim_v) * 2;
            if (s.unique_kv_tokens != (mode ? total : uniq) || s.nonshared_kv_tokens != total ||
                s.nonshared_kv_bytes != total * per_tok)
                fail_msg("%s: stats unique/nonshared tokens %lld/%lld bytes %lld", label, (long long)s.unique_kv_tokens,
                         (long long)s.nonshared_kv_tokens, (long long)s.nonshared_kv_bytes);
            if (!mode && id != FGT_W4) assert_int_equal(s.sharing_used, 1);
        }
        fgt_batch_free(&b);
    }
}

/* ------------------------------------------------------------- edges */

static void one(const char *label, fg_attn_desc a, int32_t n, const int32_t *q, const int32_t *kv,
                const int32_t *ip, const int32_t *idx, int32_t num_pages, uint32_t flags, float override) {
    fgt_batch b;
    assert_int_equal(fgt_batch_from_arrays(n, q, kv, ip, idx, num_pages, &b), 0);
    for (int mode = 0; mode < 3; mode++) {
        check_cfg c;
        memset(&c, 0, sizeof c);
        c.a = a;
        c.flags = mode == 0 ? flags : (mode == 1 ? FG_BATCH_FORCE_SHARING : FG_BATCH_NO_SHARING);
        c.scale_override = override;
        fgt_rng rng;
        fgt_rng_seed(&rng, 0xed9e + (uint64_t)mode);
        run_and_check(label, &c, &b, &rng, NULL);
    }
    fgt_batch_free(&b);
}

static void t_edges(void **state) {
    (void)state;
    fg_attn_desc a = {.num_q_heads = 8, .num_kv_heads = 1, .layout = FG_LAYOUT_MQA, .head_dim_qk = 64,
                      .head_dim_v = 64, .q_dtype = FG_DTYPE_FP32, .kv_dtype = FG_DTYPE_FP32, .page_size = 16};
    { /* one token of KV, one query */
        int32_t q[] = {1}, kv[] = {1}, ip[] = {0, 1}, idx[] = {3};
        one("kv_len 1", a, 1, q, kv, ip, idx, 4, 0, 0.0f);
    }
    { /* q_len == kv_len: the first new token sees only position 0 */
        int32_t q[] = {8, 5}, kv[] = {8, 5}, ip[] = {0, 1, 2}, idx[] = {0, 1};
        one("q_len == kv_len", a, 2, q, kv, ip, idx, 2, 0, 0.0f);
    }
    { /* one request, one node over many pages, long enough to be cut into chunks */
        int32_t q[] = {3}, kv[] = {9001}, ip[] = {0, 563};
        int32_t *idx = malloc(sizeof(int32_t) * 563);
        for (int32_t i = 0; i < 563; i++) idx[i] = (i * 7919) % 563; /* scattered pages */
        one("single long request", a, 1, q, kv, ip, idx, 563, 0, 0.0f);
        free(idx);
    }
    { /* 200 requests under one shared prefix (rows straddle any row block), q_len 1..4 */
        enum { R = 200 };
        int32_t q[R], kv[R], ip[R + 1], idx[R * 4];
        ip[0] = 0;
        for (int32_t r = 0; r < R; r++) {
            q[r] = 1 + r % 4;
            kv[r] = 48 + 1 + r % 13;
            ip[r + 1] = ip[r] + 4;
            idx[ip[r]] = 0;
            idx[ip[r] + 1] = 1;
            idx[ip[r] + 2] = 2;
            idx[ip[r] + 3] = 3 + r;
        }
        fg_attn_desc g = a;
        g.num_q_heads = 32;
        g.num_kv_heads = 4;
        g.layout = FG_LAYOUT_GQA;
        g.q_dtype = g.kv_dtype = FG_DTYPE_FP16;
        one("200 sharers", g, R, q, kv, ip, idx, 3 + R, FG_BATCH_FORCE_SHARING, 0.0f);
    }
    { /* the whole KV of r1 is a prefix of r0's, shared partial last page; scale override */
        int32_t q[] = {4, 2, 1}, kv[] = {40, 21, 25}, ip[] = {0, 3, 5, 7}, idx[] = {4, 5, 6, 4, 5, 4, 5};
        one("partial shared page + override", a, 3, q, kv, ip, idx, 7, FG_BATCH_FORCE_SHARING, 0.125f);
    }
    { /* page size 1, bf16, MHA */
        fg_attn_desc m = a;
        m.num_q_heads = m.num_kv_heads = 2;
        m.layout = FG_LAYOUT_MHA;
        m.page_size = 1;
        m.q_dtype = m.kv_dtype = FG_DTYPE_BF16;
        int32_t q[] = {2, 1, 3}, kv[] = {5, 3, 6}, ip[] = {0, 5, 8, 14};
        int32_t idx[] = {9, 8, 7, 6, 5, 9, 8, 7, 9, 8, 7, 6, 5, 4};
        one("page size 1", m, 3, q, kv, ip, idx, 10, FG_BATCH_FORCE_SHARING, 0.0f);
    }
}

/* ------------------------------------------------------------- self-checks */

/* The checker is not vacuous: a wrong O value, a wrong LSE, or a write outside the
 * plan's heads is caught. */
static void t_checker_catches(void **state) {
    (void)state;
    fg_attn_desc a = {.num_q_heads = 4, .num_kv_heads = 2, .kv_head_begin = 1, .kv_head_count = 1,
                      .layout = FG_LAYOUT_GQA, .head_dim_qk = 16, .head_dim_v = 16, .q_dtype = FG_DTYPE_FP32,
                      .kv_dtype = FG_DTYPE_FP32, .page_size = 4};
    int32_t q[] = {2, 1}, kv[] = {6, 5}, ip[] = {0, 2, 4}, idx[] = {0, 1, 0, 2};
    fgt_batch b;
    assert_int_equal(fgt_batch_from_arrays(2, q, kv, ip, idx, 3, &b), 0);
    fgt_rng rng;
    fgt_rng_seed(&rng, 5);
    fgt_tensors t;
    assert_int_equal(fgt_tensors_random(&rng, &a, &b, 0, &t), 0);
    assert_int_equal(fgt_run_cpu(g_ctx, &a, &b, &t, NULL), FG_SUCCESS);
    double o_ref[3 * 4 * 16], lse_ref[3 * 4];
    assert_int_equal(fgt_reference(&a, &b, &t, o_ref, lse_ref), 0);
    fgt_cmp cmp;
    assert_int_equal(fgt_compare(&a, &b, &t, o_ref, lse_ref, &cmp), 0);
    assert_int_equal(fgt_outside_untouched(&a, &b, &t, NULL, 0), 1);
    float *o = t.o;
    int64_t at = 1 * t.t.o_stride_token + 3 * t.t.o_stride_head + 5; /* head 3: inside [2, 4) */
    float keep = o[at];
    o[at] += 1e-3f;
    assert_int_equal(fgt_compare(&a, &b, &t, o_ref, lse_ref, &cmp), 1);
    o[at] = keep;
    float lk = t.lse[2 * t.t.lse_stride_token + 2];
    t.lse[2 * t.t.lse_stride_token + 2] = lk + 1e-3f;
    assert_int_equal(fgt_compare(&a, &b, &t, o_ref, lse_ref, &cmp), 1);
    t.lse[2 * t.t.lse_stride_token + 2] = lk;
    assert_int_equal(fgt_compare(&a, &b, &t, o_ref, lse_ref, &cmp), 0);
    o[0] = 0.0f; /* head 0 is outside the plan's heads */
    assert_int_equal(fgt_outside_untouched(&a, &b, &t, NULL, 0), 0);
    fgt_tensors_free(&t);
    fgt_batch_free(&b);
}

/* The generator's copy-on-write pages hold the same K/V as their source: every token
 * of a node of the generator's tree has identical bytes in every request under it. */
static void t_generator_cow(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        fgt_rng rng;
        fgt_rng_seed(&rng, 0xc0de0000 + seed);
        int32_t ps = (int32_t[]){2, 3, 16}[seed % 3];
        fgt_forest_params p = {.num_roots = 2, .max_depth = 6, .max_fanout = 4, .min_node_len = 1,
                               .max_node_len = 40, .page_size = ps, .max_q_len = 2, .max_requests = 30,
                               .with_tree = 1};
        fgt_batch b;
        assert_int_equal(fgt_batch_random(&rng, &p, &b), 0);
        fg_attn_desc a = {.num_q_heads = 2, .num_kv_heads = 2, .layout = FG_LAYOUT_MHA, .head_dim_qk = 8,
                          .head_dim_v = 8, .q_dtype = FG_DTYPE_FP16, .kv_dtype = FG_DTYPE_FP16, .page_size = ps};
        fgt_tensor_opts to = {.hnd = (int32_t)(seed % 2), .pad = (int32_t)(seed % 3)};
        fgt_tensors t;
        assert_int_equal(fgt_tensors_random_ex(&rng, &a, &b, &to, &t), 0);
        const int32_t nn = b.tree.num_nodes, R = b.desc.num_requests;
        for (int32_t r = 0; r < R; r++)
            for (int32_t s = 0; s < R; s++) {
                /* Tokens r and s share: the common part of their tree paths. */
                int32_t shared = 0;
                for (int32_t v = b.tree_request_node[r]; v >= 0; v = b.tree_parent[v]) {
                    int32_t on = 0;
                    for (int32_t u = b.tree_request_node[s]; u >= 0; u = b.tree_parent[u]) on |= u == v;
                    if (on) {
                        for (int32_t u = v; u >= 0; u = b.tree_parent[u]) shared += b.tree_length[u];
                        break;
                    }
                }
                for (int32_t pos = 0; pos < shared; pos++)
                    for (int32_t h = 0; h < 2; h++) {
                        const uint16_t *k = t.k;
                        int64_t pr = b.page_indices[b.page_indptr[r] + pos / ps], ps_ = b.page_indices[b.page_indptr[s] + pos / ps];
                        int64_t ar = pr * t.t.k_stride_page + (pos % ps) * t.t.k_stride_token + h * t.t.k_stride_head;
                        int64_t as = ps_ * t.t.k_stride_page + (pos % ps) * t.t.k_stride_token + h * t.t.k_stride_head;
                        if (memcmp(k + ar, k + as, 16) != 0)
                            fail_msg("generator seed %llu: requests %d and %d share %d tokens but K differs at %d",
                                     (unsigned long long)seed, r, s, shared, pos);
                    }
            }
        (void)nn;
        fgt_tensors_free(&t);
        fgt_batch_free(&b);
    }
}

/* ------------------------------------------------------------- main */

static int setup(void **state) {
    (void)state;
    return fgt_cpu_context(2, &g_ctx) == FG_SUCCESS ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fg_context_destroy(g_ctx);
    return 0;
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "random";
    if (!strcmp(which, "random")) {
        static char name[64];
        g_dtype = argc > 2 ? argv[2] : "fp32";
        snprintf(name, sizeof name, "plan.random.%s", g_dtype);
        const struct CMUnitTest t[] = {cmocka_unit_test(t_random)};
        return cmocka_run_group_tests_name(name, t, setup, teardown);
    }
    if (!strcmp(which, "determinism")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(t_determinism)};
        return cmocka_run_group_tests_name("plan.determinism", t, setup, teardown);
    }
    if (!strcmp(which, "workloads")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(t_workloads)};
        return cmocka_run_group_tests_name("plan.workloads", t, setup, teardown);
    }
    if (!strcmp(which, "edges")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(t_edges), cmocka_unit_test(t_checker_catches),
                                       cmocka_unit_test(t_generator_cow)};
        return cmocka_run_group_tests_name("plan.edges", t, setup, teardown);
    }
    fprintf(stderr, "usage: %s random fp32|fp16|bf16|mixed | determinism | workloads | edges\n", argv[0]);
    return 2;
}
