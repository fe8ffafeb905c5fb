/*
 * Property guarded: the merge owners of src/merge_owner.c, which the GPU kernels' in-pass
 * merge waits on, can never deadlock and name the right task. For W1..W5 at full size
 * (measured H100 table, shared and non-shared) and 60 random forests, on the planner's own
 * division, packing and schedule:
 *  - a q token covered by one item has no owner (-1); otherwise the owner of (token, KV
 *    head g) is a task (item, g) whose item lists the token, and every other such task has
 *    a smaller key (predicted finish, list position), so the owner is the predicted last;
 *  - keys grow along every block's list;
 *  - a run in which each block takes its tasks in order and an owner can finish only once
 *    every other task of its tokens has finished completes every task (no cycle of
 *    waits), whatever the real task times (an owner only waits at its end).
 * The simulation itself is checked to find a deadlock in a hand-made cyclic assignment,
 * so it is not a check that cannot fail.
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
#include "merge_owner.h"
#include "pack.h"
#include "schedule.h"
#include "workloads.h"

/* Blocks take their tasks in list order; a task finishes once every task it waits for has
 * finished (an owner waits for the other tasks of each (token, g) it owns). Returns the
 * number of tasks that can never finish (0: no deadlock). */
static int32_t simulate(const int32_t *bto, const int32_t *bt, int32_t nb, int32_t nt, const int32_t *item_row_off,
                        const fg_row *rows, int32_t num_items, int32_t H, const int32_t *owner, int32_t num_qtok) {
    /* the items listing each q token (CSR) */
    int32_t *qcnt = calloc((size_t)num_qtok + 1, sizeof(int32_t));
    assert_non_null(qcnt);
    for (int32_t it = 0; it < num_items; it++)
        for (int32_t r = item_row_off[it]; r < item_row_off[it + 1]; r++) qcnt[rows[r].qtok + 1]++;
    for (int32_t q = 0; q < num_qtok; q++) qcnt[q + 1] += qcnt[q];
    int32_t *qitems = malloc(sizeof(int32_t) * (size_t)(qcnt[num_qtok] ? qcnt[num_qtok] : 1));
    int32_t *cur = malloc(sizeof(int32_t) * (size_t)(num_qtok ? num_qtok : 1));
    assert_non_null(qitems);
    assert_non_null(cur);
    memcpy(cur, qcnt, sizeof(int32_t) * (size_t)num_qtok);
    for (int32_t it = 0; it < num_items; it++)
        for (int32_t r = item_row_off[it]; r < item_row_off[it + 1]; r++) qitems[cur[rows[r].qtok]++] = it;
    char *done = calloc((size_t)nt, 1);
    int32_t *head = malloc(sizeof(int32_t) * (size_t)nb);
    assert_non_null(done);
    assert_non_null(head);
    for (int32_t b = 0; b < nb; b++) head[b] = bto[b];
    int32_t finished = 0;
    for (int progress = 1; progress;) {
        progress = 0;
        for (int32_t b = 0; b < nb; b++)
            while (head[b] < bto[b + 1]) {
                const int32_t t = bt[head[b]], it = t / H, g = t % H;
                int ready = 1;
                for (int32_t r = item_row_off[it]; r < item_row_off[it + 1] && ready; r++) {
                    const int32_t q = rows[r].qtok;
                    if (owner[(int64_t)q * H + g] != t) continue;
                    for (int32_t k = qcnt[q]; k < qcnt[q + 1]; k++) {
                        const int32_t u = qitems[k] * H + g;
                        if (u != t && !done[u]) { ready = 0; break; }
                    }
                }
                if (!ready) break;
                done[t] = 1;
                head[b]++;
                finished++;
                progress = 1;
            }
    }
    free(qcnt);
    free(qitems);
    free(cur);
    free(done);
    free(head);
    return nt - finished;
}

/* Plans d as fg_plan_create does (pack, schedule) and checks the owners' properties. */
static void check_division(const char *what, fg_division *d, const fg_cost_params *cost, const fg_cost_shape *sh,
                           int32_t H, int32_t num_qtok, int32_t blocks, int32_t *owned_out) {
    int32_t removed = 0;
    assert_int_equal(fg_pack_short_items(d, cost, sh, H, blocks, &removed), FG_SUCCESS);
    const int32_t nt = d->num_items * H, nb = nt < blocks ? nt : blocks;
    double *tc = malloc(sizeof(double) * (size_t)nt);
    int32_t *bto = malloc(sizeof(int32_t) * (size_t)(nb + 1)), *bt = malloc(sizeof(int32_t) * (size_t)nt);
    int32_t *owner = malloc(sizeof(int32_t) * (size_t)num_qtok * (size_t)H);
    assert_true(tc && bto && bt && owner);
    for (int32_t t = 0; t < nt; t++) tc[t] = d->item_cost_us[t / H];
    double mk = 0, imb = 0;
    assert_int_equal(fg_schedule(tc, nt, nb, bto, bt, &mk, &imb), FG_SUCCESS);
    assert_int_equal(fg_merge_owners(bto, bt, nb, nt, d->item_cost_us, d->item_row_off, d->row, d->num_items, H,
                                     d->qtok_items, num_qtok, owner),
                     FG_SUCCESS);
    /* keys: predicted finish and position */
    double *fin = malloc(sizeof(double) * (size_t)nt);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)nt);
    assert_true(fin && pos);
    for (int32_t b = 0; b < nb; b++) {
        double t = 0;
        for (int32_t i = bto[b]; i < bto[b + 1]; i++) {
            t += d->item_cost_us[bt[i] / H];
            fin[bt[i]] = t;
            pos[bt[i]] = i;
            if (i > bto[b]) { /* keys grow along the list */
                const int32_t p = bt[i - 1];
                assert_true(fin[p] < fin[bt[i]] || (fin[p] == fin[bt[i]] && pos[p] < i));
            }
        }
    }
    int32_t owned = 0;
    for (int32_t q = 0; q < num_qtok; q++)
        for (int32_t g = 0; g < H; g++) {
            const int32_t o = owner[(int64_t)q * H + g];
            if (d->qtok_items[q] < 2) {
                if (o != -1) fail_msg("%s: token %d (one item) has owner %d", what, q, o);
                continue;
            }
            if (o < 0 || o >= nt || o % H != g) fail_msg("%s: token %d head %d: owner %d", what, q, g, o);
            owned++;
            int listed = 0, others = 0;
            for (int32_t it = 0; it < d->num_items; it++)
                for (int32_t r = d->item_row_off[it]; r < d->item_row_off[it + 1]; r++) {
                    if (d->row[r].qtok != q) continue;
                    const int32_t t = it * H + g;
                    if (t == o) { listed = 1; continue; }
                    others++;
                    if (!(fin[t] < fin[o] || (fin[t] == fin[o] && pos[t] < pos[o])))
                        fail_msg("%s: token %d head %d: task %d (finish %.3f) is not before its owner %d (%.3f)",
                                 what, q, g, t, fin[t], o, fin[o]);
                }
            if (!listed) fail_msg("%s: token %d head %d: owner %d does not list the token", what, q, g, o);
            assert_int_equal(others + 1, d->qtok_items[q]);
        }
    const int32_t stuck = simulate(bto, bt, nb, nt, d->item_row_off, d->row, d->num_items, H, owner, num_qtok);
    if (stuck) fail_msg("%s: %d tasks can never finish (a cycle of owner waits)", what, stuck);
    *owned_out = owned;
    free(fin);
    free(pos);
    free(tc);
    free(bto);
    free(bt);
    free(owner);
}

static void t_workloads(void **state) {
    (void)state;
    fg_cost_params cost;
    assert_int_equal(fg_calibration_load(FG_TEST_COST_MODEL_DIR "/sm_90-132-h100.txt", &cost), FG_SUCCESS);
    const int32_t blocks = fg_cost_blocks(&cost);
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
            assert_int_equal(fg_divide(&in, &cost, &d), FG_SUCCESS);
            fg_cost_shape sh = {group, a.head_dim_qk, a.head_dim_v, 2, 2, a.page_size};
            char what[64];
            snprintf(what, sizeof what, "%s %s", fgt_workload_name(w), ns ? "nonshared" : "shared");
            int32_t owned = 0;
            check_division(what, &d, &cost, &sh, a.num_kv_heads, qi[R], blocks, &owned);
            print_message("%-20s: %6d (token, KV head) pairs merged in the pass\n", what, owned);
            /* the shared plans of W1..W3 and W5 do merge (W4 has nothing to share) */
            if (!ns && w != FGT_W4) assert_true(owned > 0);
            fg_division_free(&d);
            fg_forest_free(&f);
        }
        free(qi);
        fgt_batch_free(&b);
    }
}

static void t_random(void **state) {
    (void)state;
    fgt_rng rng;
    fgt_rng_seed(&rng, 0x0a1e5);
    fg_cost_params cost;
    assert_int_equal(fg_calibration_load(FG_TEST_COST_MODEL_DIR "/sm_90-132-h100.txt", &cost), FG_SUCCESS);
    int64_t owned_total = 0;
    for (int i = 0; i < 60; i++) {
        fgt_forest_params p = {0};
        p.num_roots = fgt_rng_range(&rng, 1, 3);
        p.max_depth = fgt_rng_range(&rng, 2, 5);
        p.max_fanout = fgt_rng_range(&rng, 2, 32);
        p.min_node_len = 1;
        p.max_node_len = fgt_rng_range(&rng, 8, 4000);
        p.page_size = 16;
        p.max_q_len = fgt_rng_range(&rng, 1, 4);
        p.max_requests = 96;
        fgt_batch b;
        assert_int_equal(fgt_batch_random(&rng, &p, &b), 0);
        const int32_t R = b.desc.num_requests, H = fgt_rng_range(&rng, 1, 8), group = fgt_rng_range(&rng, 1, 8);
        /* few blocks as well as many: long block lists are where waits could chain */
        const int32_t blocks = fgt_rng_range(&rng, 0, 1) ? fg_cost_blocks(&cost) : fgt_rng_range(&rng, 1, 16);
        int32_t *qi = malloc(sizeof(int32_t) * (size_t)(R + 1));
        assert_non_null(qi);
        qi[0] = 0;
        for (int32_t r = 0; r < R; r++) qi[r + 1] = qi[r] + b.q_len[r];
        fg_forest f;
        assert_int_equal(fg_forest_from_block_tables(&b.desc, p.page_size, 0, &f), FG_SUCCESS);
        fg_divide_input in = {&f, R, b.q_len, b.kv_len, qi, group, H, 128, 128, 2, 2, p.page_size, blocks};
        fg_division d;
        assert_int_equal(fg_divide(&in, &cost, &d), FG_SUCCESS);
        fg_cost_shape sh = {group, 128, 128, 2, 2, p.page_size};
        char what[64];
        snprintf(what, sizeof what, "random %d", i);
        int32_t owned = 0;
        check_division(what, &d, &cost, &sh, H, qi[R], blocks, &owned);
        owned_total += owned;
        fg_division_free(&d);
        fg_forest_free(&f);
        free(qi);
        fgt_batch_free(&b);
    }
    print_message("random forests: %lld (token, KV head) pairs merged in the pass\n", (long long)owned_total);
    assert_true(owned_total > 0);
}

/* The simulation finds a cycle: two blocks whose first tasks own each other's tokens. */
static void t_simulation_can_fail(void **state) {
    (void)state;
    /* items 0 and 1 both list tokens 0 and 1; one KV head; block 0 runs item 0 then nothing,
     * block 1 runs item 1. Owners: token 0 -> task 0, token 1 -> task 1: each waits for the
     * other to finish: a cycle. */
    const int32_t item_row_off[3] = {0, 2, 4};
    const fg_row rows[4] = {{0, 0, 1, 0}, {1, 1, 1, 1}, {0, 0, 1, 2}, {1, 1, 1, 3}};
    const int32_t bto[3] = {0, 1, 2}, bt[2] = {0, 1};
    const int32_t cyclic[2] = {0, 1}, fine[2] = {1, 1};
    assert_int_equal(simulate(bto, bt, 2, 2, item_row_off, rows, 2, 1, cyclic, 2), 2);
    assert_int_equal(simulate(bto, bt, 2, 2, item_row_off, rows, 2, 1, fine, 2), 0);
}

int main(void) {
    const struct CMUnitTest t[] = {cmocka_unit_test(t_simulation_can_fail), cmocka_unit_test(t_workloads),
                                   cmocka_unit_test(t_random)};
    return cmocka_run_group_tests_name("plan.merge_owner", t, NULL, NULL);
}
