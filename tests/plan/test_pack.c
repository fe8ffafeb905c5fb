/*
 * Property guarded: packing single-request items into multi-segment items (src/pack.c)
 * keeps results exact and never makes the schedule worse. With the measured H100 cost
 * table the planner packs W5's 64-token own suffixes and the short leaves of random
 * forests; the plans then run on the CPU backend (same work list as the GPU) and must
 * match the double-precision reference, and W5's plan must actually be packed (fewer
 * items than requests), so the test cannot pass without exercising the packing path.
 * On W1..W5 at full size (H100 table and the built-in defaults), a packed division's
 * LPT makespan (tests/support's independent O(tasks x blocks) LPT) is never above the
 * unpacked one's, its imbalance never above 1.10 where the unpacked one's is not, every
 * pack holds distinct requests of equal row counts within the matrix paths' row limit,
 * and W1 n=32 and W5 do pack on the H100.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "calibration.h"
#include "divide.h"
#include "fgtest.h"
#include "pack.h"
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

static void t_workloads_pack(void **state) {
    (void)state;
    fg_cost_params tables[3];
    assert_int_equal(fg_calibration_load(FG_TEST_COST_MODEL_DIR "/sm_90-132-h100.txt", &tables[0]), FG_SUCCESS);
    fg_cost_defaults("gfx90a", 110, 0, &tables[1]);
    fg_cost_defaults("cpu", 16, 0, &tables[2]);
    for (int ti = 0; ti < 3; ti++) {
        const fg_cost_params *cost = &tables[ti];
        const int32_t blocks = fg_cost_blocks(cost);
        for (int w = 0; w < FGT_NUM_WORKLOADS; w++) {
            fg_attn_desc a;
            fgt_batch b;
            assert_int_equal(fgt_batch_workload(w, 1, &a, &b), 0);
            const int32_t R = b.desc.num_requests, group = a.num_q_heads / a.num_kv_heads;
            int32_t *qi = malloc(sizeof(int32_t) * (size_t)(R + 1));
            assert_non_null(qi);
            qi[0] = 0;
            for (int32_t r = 0; r < R; r++) qi[r + 1] = qi[r] + b.q_len[r];
            for (int ns = 0; ns < 2; ns++) {
                fg_forest f;
                assert_int_equal(fg_forest_from_block_tables(&b.desc, a.page_size, ns, &f), FG_SUCCESS);
                fg_divide_input in = {&f, R, b.q_len, b.kv_len, qi, group, a.num_kv_heads, a.head_dim_qk,
                                      a.head_dim_v, 2, 2, a.page_size, blocks};
                fg_division d;
                assert_int_equal(fg_divide(&in, cost, &d), FG_SUCCESS);
                const int32_t items0 = d.num_items;
                int32_t *seg0 = malloc(sizeof(int32_t) * (size_t)(items0 + 1));
                int32_t *row0 = malloc(sizeof(int32_t) * (size_t)(items0 + 1));
                assert_non_null(seg0);
                assert_non_null(row0);
                memcpy(seg0, d.item_seg_off, sizeof(int32_t) * (size_t)(items0 + 1));
                memcpy(row0, d.item_row_off, sizeof(int32_t) * (size_t)(items0 + 1));
                double *cost0 = malloc(sizeof(double) * (size_t)items0);
                assert_non_null(cost0);
                memcpy(cost0, d.item_cost_us, sizeof(double) * (size_t)items0);
                const double mk0 = fgt_lpt_makespan(d.item_cost_us, d.num_items, a.num_kv_heads, blocks);
                fg_cost_shape sh = {group, a.head_dim_qk, a.head_dim_v, 2, 2, a.page_size};
                int32_t removed = -1;
                assert_int_equal(fg_pack_short_items(&d, cost, &sh, a.num_kv_heads, blocks, &removed), FG_SUCCESS);
                assert_int_equal(d.num_items + removed, items0);
                const double mk1 = fgt_lpt_makespan(d.item_cost_us, d.num_items, a.num_kv_heads, blocks);
                print_message("%-8s %-9s %-6s: %5d -> %5d items, LPT makespan %8.1f -> %8.1f us\n",
                              fgt_workload_name(w), ns ? "nonshared" : "shared", cost->arch, items0, d.num_items,
                              mk0, mk1);
                if (mk1 > mk0 * (1.0 + 1e-12))
                    fail_msg("%s on %s: packing raised the LPT makespan %.3f -> %.3f", fgt_workload_name(w),
                             cost->arch, mk0, mk1);
                /* ... nor unbalances a balanced division (imbalance = makespan over mean) */
                double sum0 = 0.0, sum1 = 0.0;
                const int64_t T0 = (int64_t)items0 * a.num_kv_heads, T1 = (int64_t)d.num_items * a.num_kv_heads;
                for (int32_t i = 0; i < items0; i++) sum0 += cost0[i];
                for (int32_t i = 0; i < d.num_items; i++) sum1 += d.item_cost_us[i];
                const double imb0 = mk0 / (sum0 * a.num_kv_heads / (double)(T0 < blocks ? T0 : blocks));
                const double imb1 = mk1 / (sum1 * a.num_kv_heads / (double)(T1 < blocks ? T1 : blocks));
                if (imb0 <= 1.10 && imb1 > 1.10 + 1e-9)
                    fail_msg("%s on %s: packing unbalanced a balanced division: imbalance %.4f -> %.4f",
                             fgt_workload_name(w), cost->arch, imb0, imb1);
                free(cost0);
                /* Every item is a run of consecutive old items (its first segment and row
                 * start an old item's); one of two or more old items is a pack: one-request
                 * one-segment members of distinct requests and equal rows, within the
                 * matrix paths' row limit. */
                const int32_t max_m = cost->pad_rows > 1 && cost->tile_rows > 32 ? 32 : cost->tile_rows;
                for (int32_t i = 0, o = 0; i < d.num_items; i++) {
                    assert_int_equal(d.item_seg_off[i], seg0[o]);
                    assert_int_equal(d.item_row_off[i], row0[o]);
                    int32_t o_end = o + 1;
                    while (o_end < items0 && seg0[o_end] < d.item_seg_off[i + 1]) o_end++;
                    assert_int_equal(seg0[o_end], d.item_seg_off[i + 1]);
                    if (o_end - o > 1) {
                        const int32_t r = row0[o + 1] - row0[o];
                        if ((row0[o_end] - row0[o]) * group > max_m)
                            fail_msg("%s: a pack of %d rows x group %d exceeds %d", fgt_workload_name(w),
                                     row0[o_end] - row0[o], group, max_m);
                        for (int32_t m = o; m < o_end; m++) {
                            assert_int_equal(seg0[m + 1] - seg0[m], 1);
                            assert_int_equal(row0[m + 1] - row0[m], r);
                            const fg_seg *sm = &d.seg[seg0[m]];
                            assert_int_equal(sm->rank_hi - sm->rank_lo, 1);
                            for (int32_t m2 = o; m2 < m; m2++)
                                if (d.seg[seg0[m2]].rank_lo == sm->rank_lo)
                                    fail_msg("%s: a pack holds request rank %d twice", fgt_workload_name(w),
                                             sm->rank_lo);
                        }
                    }
                    o = o_end;
                }
                free(seg0);
                free(row0);
                if (ti == 0 && !ns && (w == FGT_W1_N32 || w == FGT_W5)) assert_true(d.num_items < items0);
                fg_division_free(&d);
                fg_forest_free(&f);
            }
            free(qi);
            fgt_batch_free(&b);
        }
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
    const struct CMUnitTest t[] = {cmocka_unit_test(t_w5_packed), cmocka_unit_test(t_random_packed),
                                   cmocka_unit_test(t_workloads_pack)};
    return cmocka_run_group_tests_name("plan.packed", t, setup, teardown);
}
