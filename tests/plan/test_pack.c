/*
 * Property guarded: packing short single-request items into multi-segment items (src/pack.c)
 * keeps results exact. With the measured H100 cost table (per-task fixed cost ~3.8 us) the
 * planner packs W5's 64-token own suffixes and the short leaves of random forests; the
 * plans then run on the CPU backend (same work list as the GPU) and must match the
 * double-precision reference, and W5's plan must actually be packed (fewer items than
 * requests), so the test cannot pass without exercising the packing path.
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

static void check_batch(const fg_attn_desc *a, const fgt_batch *b, uint64_t seed, fg_plan_stats *st) {
    fgt_rng rng;
    fgt_rng_seed(&rng, seed);
    fgt_tensors t;
    assert_int_equal(fgt_tensors_random(&rng, a, b, 0, &t), 0);
    size_t no = (size_t)b->num_q_tokens * (size_t)a->num_q_heads * (size_t)a->head_dim_v;
    double *o_ref = malloc(sizeof(double) * no);
    double *lse_ref = malloc(sizeof(double) * (size_t)b->num_q_tokens * (size_t)a->num_q_heads);
    assert_non_null(o_ref);
    assert_non_null(lse_ref);
    assert_int_equal(fgt_reference(a, b, &t, o_ref, lse_ref), 0);
    fg_status s = fgt_run_cpu(g_ctx, a, b, &t, st);
    if (s != FG_SUCCESS) fail_msg("seed %llu: %s", (unsigned long long)seed, fg_last_error());
    fgt_cmp cmp;
    if (fgt_compare(a, b, &t, o_ref, lse_ref, &cmp) != 0)
        fail_msg("seed %llu: %s", (unsigned long long)seed, cmp.msg);
    free(o_ref);
    free(lse_ref);
    fgt_tensors_free(&t);
}

/* W5 at 1/4 scale (64 requests x 16 own tokens under a 256-token prefix). */
static void t_w5_packed(void **state) {
    (void)state;
    fg_attn_desc a;
    fgt_batch b;
    assert_int_equal(fgt_batch_workload(FGT_W5, 4, &a, &b), 0);
    fg_plan_stats st;
    check_batch(&a, &b, 0x5eed5, &st);
    assert_int_equal(st.sharing_used, 1);
    /* Unpacked, every request's own suffix is an item of its own. */
    assert_true(st.num_items < b.desc.num_requests);
    fgt_batch_free(&b);
}

static void t_random_packed(void **state) {
    (void)state;
    fgt_rng rng;
    fgt_rng_seed(&rng, 0xfacade);
    static const fg_dtype dt[3] = {FG_DTYPE_FP32, FG_DTYPE_FP16, FG_DTYPE_BF16};
    static const int32_t groups[4] = {1, 4, 8, 32};
    for (int i = 0; i < 40; i++) {
        fgt_forest_params p = {0};
        p.num_roots = fgt_rng_range(&rng, 1, 2);
        p.max_depth = fgt_rng_range(&rng, 2, 4);
        p.max_fanout = fgt_rng_range(&rng, 4, 32);
        p.min_node_len = 1;
        p.max_node_len = fgt_rng_range(&rng, 8, 200);
        p.page_size = fgt_rng_range(&rng, 0, 1) ? 16 : 5;
        p.max_q_len = fgt_rng_range(&rng, 1, 4);
        p.max_requests = 64;
        fgt_forest_opts o = {0};
        o.max_work = 400000;
        fgt_batch b;
        assert_int_equal(fgt_batch_random_ex(&rng, &p, &o, &b), 0);
        int32_t g = groups[fgt_rng_range(&rng, 0, 3)];
        fg_attn_desc a = {0};
        a.num_kv_heads = g == 32 ? 1 : 2;
        a.num_q_heads = a.num_kv_heads * g;
        a.layout = g == 1 ? FG_LAYOUT_MHA : a.num_kv_heads == 1 ? FG_LAYOUT_MQA : FG_LAYOUT_GQA;
        a.head_dim_qk = a.head_dim_v = 32;
        a.q_dtype = a.kv_dtype = dt[i % 3];
        a.page_size = p.page_size;
        b.desc.flags = FG_BATCH_FORCE_SHARING;
        fg_plan_stats st;
        check_batch(&a, &b, 1000 + (uint64_t)i, &st);
        fgt_batch_free(&b);
    }
}

static int setup(void **state) {
    (void)state;
    fg_context_options o;
    fg_context_options_init(&o);
    o.backend = FG_BACKEND_CPU;
    o.num_threads = 2;
    o.calibration_path = FG_TEST_COST_MODEL_DIR "/sm_90-132-h100.txt";
    if (fg_context_create(&o, &g_ctx) != FG_SUCCESS) {
        fprintf(stderr, "setup: %s\n", fg_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fg_context_destroy(g_ctx);
    return 0;
}

int main(void) {
    const struct CMUnitTest t[] = {cmocka_unit_test(t_w5_packed), cmocka_unit_test(t_random_packed)};
    return cmocka_run_group_tests_name("plan.packed", t, setup, teardown);
}
