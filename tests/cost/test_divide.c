/*
 * Guards the division contract of src/divide.h on random prefix forests built from
 * block tables: every (q token, KV position below its causal limit) pair is covered by
 * exactly one (item, segment) that addresses the token's own KV (same page id), no item
 * lists a q token twice, rows carry the right rank/limit and slot -1; division is
 * deterministic; short nodes are folded; and the schedule built on the division is
 * balanced (imbalance <= 1.10) except where a lower bound proves it cannot be.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cost_model.h"
#include "divide.h"
#include "forest.h"
#include "gen.h"
#include "schedule.h"
#include "workloads.h"

static int32_t page_of(const gen_batch *b, int32_t r, int32_t p) {
    return b->pages[b->indptr[r] + p / b->page_size];
}

/* Independent coverage count; fails the test with a message on the first violation. */
static void check_contract(const gen_batch *b, const fg_forest *f, const fg_division *d) {
    int32_t R = b->desc.num_requests, Q = b->num_qtok;
    int32_t *req_of = malloc(sizeof(int32_t) * (size_t)Q);
    int64_t *cnt_off = malloc(sizeof(int64_t) * (size_t)(Q + 1));
    int32_t *seen = malloc(sizeof(int32_t) * (size_t)Q);
    int32_t *items_of = calloc((size_t)Q, sizeof(int32_t));
    cnt_off[0] = 0;
    for (int32_t r = 0; r < R; r++)
        for (int32_t i = 0; i < b->q_len[r]; i++) {
            int32_t t = b->q_indptr[r] + i;
            req_of[t] = r;
            cnt_off[t + 1] = cnt_off[t] + b->kv_len[r];
            seen[t] = -1;
        }
    int32_t *cnt = calloc((size_t)cnt_off[Q], sizeof(int32_t));
    assert_true(d->num_items >= 1);
    assert_int_equal(d->item_seg_off[0], 0);
    assert_int_equal(d->item_row_off[0], 0);
    assert_int_equal(d->item_seg_off[d->num_items], d->num_segs);
    assert_int_equal(d->item_row_off[d->num_items], d->num_rows);
    for (int32_t it = 0; it < d->num_items; it++) {
        assert_true(d->item_seg_off[it + 1] > d->item_seg_off[it]);
        assert_true(d->item_row_off[it + 1] > d->item_row_off[it]);
        assert_true(isfinite(d->item_cost_us[it]) && d->item_cost_us[it] > 0.0);
        for (int32_t k = d->item_row_off[it]; k < d->item_row_off[it + 1]; k++) {
            const fg_row *w = &d->row[k];
            assert_true(w->qtok >= 0 && w->qtok < Q);
            if (seen[w->qtok] == it) fail_msg("item %d lists q token %d twice", it, w->qtok);
            seen[w->qtok] = it;
            items_of[w->qtok]++;
            int32_t r = req_of[w->qtok], i = w->qtok - b->q_indptr[r];
            assert_int_equal(w->rank, f->rank_of_req[r]);
            assert_int_equal(w->limit, b->kv_len[r] - b->q_len[r] + i + 1);
            assert_int_equal(w->slot, -1);
            for (int32_t s = d->item_seg_off[it]; s < d->item_seg_off[it + 1]; s++) {
                const fg_seg *g = &d->seg[s];
                assert_true(g->src_req >= 0 && g->src_req < R);
                assert_true(g->kv_begin >= 0 && g->kv_begin < g->kv_end && g->kv_end <= b->kv_len[g->src_req]);
                assert_true(g->rank_lo >= 0 && g->rank_lo < g->rank_hi && g->rank_hi <= R);
                if (w->rank < g->rank_lo || w->rank >= g->rank_hi) continue;
                int32_t e = g->kv_end < w->limit ? g->kv_end : w->limit;
                for (int32_t p = g->kv_begin; p < e; p++) {
                    if (page_of(b, g->src_req, p) != page_of(b, r, p))
                        fail_msg("item %d seg %d: position %d of request %d read through request %d's "
                                 "table (page %d != %d)", it, s, p, r, g->src_req,
                                 page_of(b, g->src_req, p), page_of(b, r, p));
                    cnt[cnt_off[w->qtok] + p]++;
                }
            }
        }
    }
    for (int32_t t = 0; t < Q; t++) {
        int32_t r = req_of[t], lim = b->kv_len[r] - b->q_len[r] + (t - b->q_indptr[r]) + 1;
        if (items_of[t] < 1) fail_msg("q token %d is in no item", t);
        for (int32_t p = 0; p < lim; p++)
            if (cnt[cnt_off[t] + p] != 1)
                fail_msg("q token %d (request %d) position %d covered %d times", t, r, p, cnt[cnt_off[t] + p]);
    }
    free(cnt);
    free(req_of);
    free(cnt_off);
    free(seen);
    free(items_of);
}

typedef struct setup {
    gen_batch b;
    fg_forest f;
    fg_divide_input in;
    fg_cost_params cost;
} setup;

static const char *const k_archs[] = {"cpu", "sm_90", "sm_80", "gfx90a", "gfx942", "other"};

static void make_setup(gen_rng *rng, setup *s, int no_sharing) {
    static const int32_t pss[] = {1, 3, 16, 16, 32};
    static const int32_t groups[] = {1, 4, 8, 32};
    gen_shape sh;
    sh.roots = gen_range(rng, 1, 3);
    sh.depth = gen_range(rng, 1, 5);
    sh.fanout = gen_range(rng, 0, 3) == 0 ? 24 : 4;
    int kind = gen_range(rng, 0, 3);
    sh.min_len = kind == 0 ? 1 : 1 + gen_range(rng, 0, 64);
    sh.max_len = kind == 0 ? 12 : sh.min_len + gen_range(rng, 0, kind == 3 ? 3000 : 600);
    sh.page_size = pss[gen_range(rng, 0, 4)];
    sh.max_q = gen_range(rng, 0, 2) ? 1 : 6;
    sh.max_requests = gen_range(rng, 1, 96);
    sh.requests_per_leaf = gen_range(rng, 1, 3);
    sh.inner_request_pct = 15;
    assert_int_equal(gen_batch_make(rng, &sh, &s->b), 0);
    assert_int_equal(fg_forest_from_block_tables(&s->b.desc, sh.page_size, no_sharing, &s->f), FG_SUCCESS);
    const char *arch = k_archs[gen_range(rng, 0, 5)];
    fg_cost_defaults(arch, gen_range(rng, 0, 3) ? 0 : gen_range(rng, 1, 200), 0, &s->cost);
    if (!strcmp(arch, "cpu")) fg_cost_defaults("cpu", gen_range(rng, 1, 16), 1, &s->cost);
    memset(&s->in, 0, sizeof s->in);
    s->in.forest = &s->f;
    s->in.num_requests = s->b.desc.num_requests;
    s->in.q_len = s->b.q_len;
    s->in.kv_len = s->b.kv_len;
    s->in.q_indptr = s->b.q_indptr;
    s->in.group = groups[gen_range(rng, 0, 3)];
    s->in.kv_head_count = gen_range(rng, 1, 8);
    s->in.head_dim_qk = s->in.head_dim_v = 128;
    s->in.q_elem_bytes = s->in.kv_elem_bytes = 2;
    s->in.page_size = sh.page_size;
    s->in.num_blocks = fg_cost_blocks(&s->cost);
}

static void free_setup(setup *s) {
    fg_forest_free(&s->f);
    gen_free(&s->b);
}

static void test_random_contract(void **state) {
    (void)state;
    gen_rng rng = {12345};
    for (int iter = 0; iter < 600; iter++) {
        setup s;
        make_setup(&rng, &s, iter % 7 == 3);
        fg_division d;
        fg_status st = fg_divide(&s.in, &s.cost, &d);
        if (st != FG_SUCCESS) fail_msg("iteration %d: fg_divide returned %d", iter, st);
        check_contract(&s.b, &s.f, &d);
        fg_division_free(&d);
        free_setup(&s);
    }
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : (x < y);
}

/* Schedules the division the way plan.c does (blocks = min(tasks, blocks)) and checks
 * the balance. Returns 1 when the imbalance exceeded 1.10 (an accepted exception). */
static int check_balance(const setup *s, const fg_division *d, int iter) {
    int32_t H = s->in.kv_head_count, T = d->num_items * H;
    int32_t B = T < s->in.num_blocks ? T : s->in.num_blocks;
    double *cost = malloc(sizeof(double) * (size_t)T), *sorted = malloc(sizeof(double) * (size_t)T);
    int32_t *off = malloc(sizeof(int32_t) * (size_t)(B + 1)), *bt = malloc(sizeof(int32_t) * (size_t)T);
    double total = 0.0;
    for (int32_t t = 0; t < T; t++) {
        cost[t] = sorted[t] = d->item_cost_us[t / H];
        total += cost[t];
    }
    double mk, imb;
    assert_int_equal(fg_schedule(cost, T, B, off, bt, &mk, &imb), FG_SUCCESS);
    qsort(sorted, (size_t)T, sizeof(double), cmp_desc);
    /* Lower bounds on any schedule's makespan: the mean, the longest task, and
     * (pigeonhole) some block holding j + 1 of the j*B + 1 longest tasks, so at least the
     * j + 1 shortest of them: c[jB-j] + ... + c[jB] (0-based). `forced` = how many of the
     * longest tasks the binding bound involves. */
    double mean = total / B, lb = mean > sorted[0] ? mean : sorted[0];
    int32_t forced = mean > sorted[0] ? 0 : 1;
    for (int64_t j = 1; j * B < T; j++) {
        double sum = 0.0;
        for (int64_t i = j * B - j; i <= j * B; i++) sum += sorted[i];
        if (sum > lb) { lb = sum; forced = (int32_t)(j * B + 1); }
    }
    assert_true(fabs(imb - mk / mean) < 1e-9 * imb);
    if (imb <= 1.10) goto ok;
    /* Over 1.10 is accepted only when it is unavoidable: either the schedule is within
     * 1.10 of a lower bound that any schedule of these tasks obeys, or the work is too
     * coarse to balance: cutting every item into as many pieces as divide.c's smallest
     * chunk allows (the minimum for the item's own row count, relaxed as far as
     * divide.c goes) gives fewer than 10 pieces per block, so one piece exceeds a tenth
     * of a block's share. Either way the schedule must keep LPT's guarantee (Graham:
     * 4/3 of the optimum). */
    if (mk > 4.0 / 3.0 * lb * (1.0 + 1e-12))
        fail_msg("iteration %d: makespan %.3f above 4/3 of the lower bound %.3f", iter, mk, lb);
    if (mk <= 1.10 * lb * (1.0 + 1e-12)) goto accepted;
    int64_t pieces = 0;
    for (int32_t it = 0; it < d->num_items; it++) {
        const fg_seg *g = &d->seg[d->item_seg_off[it]];
        int32_t lmin = fg_divide_min_chunk(&s->in, &s->cost, d->item_row_off[it + 1] - d->item_row_off[it]);
        int32_t k = (g->kv_end - g->kv_begin) / lmin;
        pieces += (int64_t)(k > 1 ? k : 1) * H;
    }
    if (pieces >= 10 * (int64_t)B)
        fail_msg("iteration %d: imbalance %.3f (makespan %.3f, bound %.3f) although the items could be cut "
                 "into %lld pieces for %d blocks", iter, imb, mk, lb, (long long)pieces, B);
accepted:
    (void)forced;
    free(cost); free(sorted); free(off); free(bt);
    return 1;
ok:
    free(cost); free(sorted); free(off); free(bt);
    return 0;
}

static void test_random_balance(void **state) {
    (void)state;
    gen_rng rng = {4242};
    int exceptions = 0, folded = 0;
    for (int iter = 0; iter < 600; iter++) {
        setup s;
        make_setup(&rng, &s, iter % 7 == 3);
        fg_division d;
        assert_int_equal(fg_divide(&s.in, &s.cost, &d), FG_SUCCESS);
        exceptions += check_balance(&s, &d, iter);
        folded += d.num_segs > d.num_items;
        fg_division_free(&d);
        free_setup(&s);
    }
    print_message("balance: %d of 600 random forests <= 1.10, %d over it and proven unavoidable (too coarse "
                  "or within 1.10 of a lower bound); %d with folded nodes\n", 600 - exceptions, exceptions, folded);
    /* The generator mixes small batches with devices of up to 600 blocks on purpose;
     * these floors only keep the two kinds of case both exercised. */
    assert_true(folded > 20);
    assert_true(600 - exceptions >= 200);
}

/* The DESIGN.md workloads at full size must balance on every device the library has
 * defaults for: they are what the benchmark runs. */
static void test_workloads_balance(void **state) {
    (void)state;
    static const struct { const char *arch; int32_t units; } devs[] = {
        {"sm_90", 132}, {"sm_80", 108}, {"gfx942", 304}, {"gfx90a", 110}, {"cpu", 2}, {"cpu", 16}};
    for (int w = 0; w < FGT_NUM_WORKLOADS; w++) {
        fg_attn_desc a;
        fgt_batch b;
        assert_int_equal(fgt_batch_workload(w, 1, &a, &b), 0);
        int32_t R = b.desc.num_requests;
        int32_t *qi = malloc(sizeof(int32_t) * (size_t)(R + 1));
        qi[0] = 0;
        for (int32_t r = 0; r < R; r++) qi[r + 1] = qi[r] + b.q_len[r];
        for (int ns = 0; ns < 2; ns++) {
            fg_forest f;
            assert_int_equal(fg_forest_from_block_tables(&b.desc, a.page_size, ns, &f), FG_SUCCESS);
            for (size_t k = 0; k < sizeof devs / sizeof devs[0]; k++) {
                setup s;
                memset(&s, 0, sizeof s);
                fg_cost_defaults(devs[k].arch, devs[k].units, 0, &s.cost);
                s.in = (fg_divide_input){&f, R, b.q_len, b.kv_len, qi, a.num_q_heads / a.num_kv_heads,
                                         a.num_kv_heads, a.head_dim_qk, a.head_dim_v, 2, 2, a.page_size,
                                         fg_cost_blocks(&s.cost)};
                fg_division d;
                assert_int_equal(fg_divide(&s.in, &s.cost, &d), FG_SUCCESS);
                int32_t T = d.num_items * s.in.kv_head_count, B = T < s.in.num_blocks ? T : s.in.num_blocks;
                double *cost = malloc(sizeof(double) * (size_t)T);
                int32_t *off = malloc(sizeof(int32_t) * (size_t)(B + 1)), *bt = malloc(sizeof(int32_t) * (size_t)T);
                for (int32_t t = 0; t < T; t++) cost[t] = d.item_cost_us[t / s.in.kv_head_count];
                double mk, imb;
                assert_int_equal(fg_schedule(cost, T, B, off, bt, &mk, &imb), FG_SUCCESS);
                print_message("%-8s %-9s %-6s/%3d: %6d items %7d tasks, makespan %9.1f us, imbalance %.3f\n",
                              fgt_workload_name(w), ns ? "nonshared" : "shared", devs[k].arch, devs[k].units,
                              d.num_items, T, mk, imb);
                if (imb > 1.10) fail_msg("%s on %s: imbalance %.3f", fgt_workload_name(w), devs[k].arch, imb);
                free(cost); free(off); free(bt);
                fg_division_free(&d);
            }
            fg_forest_free(&f);
        }
        free(qi);
        fgt_batch_free(&b);
    }
}

static void test_deterministic(void **state) {
    (void)state;
    gen_rng rng = {777};
    for (int iter = 0; iter < 50; iter++) {
        setup s;
        make_setup(&rng, &s, 0);
        fg_division a, c;
        assert_int_equal(fg_divide(&s.in, &s.cost, &a), FG_SUCCESS);
        assert_int_equal(fg_divide(&s.in, &s.cost, &c), FG_SUCCESS);
        assert_int_equal(a.num_items, c.num_items);
        assert_int_equal(a.num_segs, c.num_segs);
        assert_int_equal(a.num_rows, c.num_rows);
        assert_memory_equal(a.item_seg_off, c.item_seg_off, sizeof(int32_t) * (size_t)(a.num_items + 1));
        assert_memory_equal(a.item_row_off, c.item_row_off, sizeof(int32_t) * (size_t)(a.num_items + 1));
        assert_memory_equal(a.seg, c.seg, sizeof(fg_seg) * (size_t)a.num_segs);
        assert_memory_equal(a.row, c.row, sizeof(fg_row) * (size_t)a.num_rows);
        assert_memory_equal(a.item_cost_us, c.item_cost_us, sizeof(double) * (size_t)a.num_items);
        fg_division_free(&a);
        fg_division_free(&c);
        free_setup(&s);
    }
}

static void test_bad_input(void **state) {
    (void)state;
    fg_division d;
    fg_cost_params p;
    fg_cost_defaults("cpu", 2, 1, &p);
    assert_int_equal(fg_divide(NULL, &p, &d), FG_ERR_NULL_POINTER);
    fg_divide_input in;
    memset(&in, 0, sizeof in);
    assert_int_equal(fg_divide(&in, &p, &d), FG_ERR_NULL_POINTER);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_contract),
        cmocka_unit_test(test_random_balance),
        cmocka_unit_test(test_workloads_balance),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests_name("divide", tests, NULL, NULL);
}
