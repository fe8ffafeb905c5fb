/*
 * Guards the scheduler (src/schedule.h): every task is placed exactly once; block
 * offsets are a valid CSR; each block's tasks run longest first; the reported makespan
 * and imbalance match the placement; the result is never worse than plain LPT and is
 * within 4/3 of a lower bound (Graham's guarantee); equal inputs give identical bytes,
 * ties broken by index; bad arguments are refused.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fgtest.h"
#include "forgeattn.h"
#include "schedule.h"

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void check_one(const double *c, int32_t n, int32_t B) {
    int32_t *off = malloc(sizeof(int32_t) * (size_t)(B + 1)), *bt = malloc(sizeof(int32_t) * (size_t)(n + 1));
    int32_t *seen = calloc((size_t)(n + 1), sizeof(int32_t));
    double mk, imb;
    assert_int_equal(fg_schedule(c, n, B, off, bt, &mk, &imb), FG_SUCCESS);
    assert_int_equal(off[0], 0);
    assert_int_equal(off[B], n);
    double max = 0.0, total = 0.0, biggest = 0.0;
    for (int32_t b = 0; b < B; b++) {
        assert_true(off[b + 1] >= off[b]);
        double load = 0.0;
        for (int32_t k = off[b]; k < off[b + 1]; k++) {
            int32_t t = bt[k];
            assert_true(t >= 0 && t < n);
            assert_int_equal(seen[t]++, 0);
            load += c[t];
            if (k > off[b]) {
                int32_t u = bt[k - 1];
                assert_true(c[u] > c[t] || (c[u] == c[t] && u < t)); /* longest first, ties by index */
            }
        }
        max = load > max ? load : max;
        total += load;
    }
    for (int32_t t = 0; t < n; t++) biggest = c[t] > biggest ? c[t] : biggest;
    assert_true(fabs(mk - max) <= 1e-9 * (max + 1.0));
    double mean = total / B;
    if (mean > 0.0) assert_true(fabs(imb - mk / mean) <= 1e-9 * imb);
    else assert_true(imb == 1.0);
    assert_true(mk <= fgt_lpt_makespan(c, n, 1, B) * (1.0 + 1e-9));
    double lb = mean > biggest ? mean : biggest;
    assert_true(mk <= 4.0 / 3.0 * lb * (1.0 + 1e-9) || mk <= fgt_lpt_makespan(c, n, 1, B));
    free(off);
    free(bt);
    free(seen);
}

static void test_random(void **state) {
    (void)state;
    uint64_t s = 5;
    int improved = 0;
    for (int it = 0; it < 400; it++) {
        int32_t n = (int32_t)(rng_next(&s) % 3000), B = 1 + (int32_t)(rng_next(&s) % 300);
        double *c = malloc(sizeof(double) * (size_t)(n + 1));
        int kind = (int)(rng_next(&s) % 3);
        for (int32_t t = 0; t < n; t++) {
            double u = (double)(rng_next(&s) % 1000000) / 1e6;
            c[t] = kind == 0 ? 1.0 + u : (kind == 1 ? (double)(1 + rng_next(&s) % 4) : u * u * 100.0);
        }
        check_one(c, n, B);
        int32_t *off = malloc(sizeof(int32_t) * (size_t)(B + 1)), *bt = malloc(sizeof(int32_t) * (size_t)(n + 1));
        double mk, imb;
        assert_int_equal(fg_schedule(c, n, B, off, bt, &mk, &imb), FG_SUCCESS);
        improved += mk < fgt_lpt_makespan(c, n, 1, B) * (1.0 - 1e-9);
        free(off);
        free(bt);
        free(c);
    }
    print_message("improvement passes beat plain LPT on %d of 400 random task sets\n", improved);
    assert_true(improved > 0);
}

static void test_balanced_cases(void **state) {
    (void)state;
    /* 8 tasks of 3 and 8 of 1 on 4 blocks: LPT's optimum is 8 per block. */
    double c[16];
    for (int i = 0; i < 16; i++) c[i] = i % 2 ? 3.0 : 1.0;
    int32_t off[5], bt[16];
    double mk, imb;
    assert_int_equal(fg_schedule(c, 16, 4, off, bt, &mk, &imb), FG_SUCCESS);
    assert_true(mk == 8.0 && imb == 1.0);
    /* The classic LPT trap (Graham): 2 blocks, {3,3,2,2,2}: LPT gives 7, optimum 6. */
    double g[5] = {3, 3, 2, 2, 2};
    int32_t off2[3], bt2[5];
    assert_int_equal(fg_schedule(g, 5, 2, off2, bt2, &mk, &imb), FG_SUCCESS);
    assert_true(mk == 6.0);
    /* no tasks */
    int32_t off3[4];
    assert_int_equal(fg_schedule(NULL, 0, 3, off3, NULL, &mk, &imb), FG_SUCCESS);
    assert_true(mk == 0.0 && imb == 1.0 && off3[3] == 0);
}

static void test_deterministic(void **state) {
    (void)state;
    uint64_t s = 11;
    int32_t n = 2000, B = 64;
    double *c = malloc(sizeof(double) * (size_t)n);
    for (int32_t t = 0; t < n; t++) c[t] = (double)(1 + rng_next(&s) % 5); /* many ties */
    int32_t *o1 = malloc(sizeof(int32_t) * (size_t)(B + 1)), *o2 = malloc(sizeof(int32_t) * (size_t)(B + 1));
    int32_t *b1 = malloc(sizeof(int32_t) * (size_t)n), *b2 = malloc(sizeof(int32_t) * (size_t)n);
    double m1, m2, i1, i2;
    assert_int_equal(fg_schedule(c, n, B, o1, b1, &m1, &i1), FG_SUCCESS);
    assert_int_equal(fg_schedule(c, n, B, o2, b2, &m2, &i2), FG_SUCCESS);
    assert_memory_equal(o1, o2, sizeof(int32_t) * (size_t)(B + 1));
    assert_memory_equal(b1, b2, sizeof(int32_t) * (size_t)n);
    assert_memory_equal(&m1, &m2, sizeof m1);
    assert_memory_equal(&i1, &i2, sizeof i1);
    free(c); free(o1); free(o2); free(b1); free(b2);
}

static void test_bad_args(void **state) {
    (void)state;
    double c[2] = {1.0, NAN}, mk, imb;
    int32_t off[3], bt[2];
    assert_int_equal(fg_schedule(c, 2, 0, off, bt, &mk, &imb), FG_ERR_INVALID_VALUE);
    assert_int_equal(fg_schedule(c, -1, 2, off, bt, &mk, &imb), FG_ERR_INVALID_VALUE);
    assert_int_equal(fg_schedule(c, 2, 2, off, bt, &mk, &imb), FG_ERR_INVALID_VALUE);
    assert_non_null(strstr(fg_last_error(), "task_cost_us[1]"));
    c[1] = -1.0;
    assert_int_equal(fg_schedule(c, 2, 2, off, bt, &mk, &imb), FG_ERR_INVALID_VALUE);
    c[1] = 1.0;
    assert_int_equal(fg_schedule(c, 2, 2, NULL, bt, &mk, &imb), FG_ERR_NULL_POINTER);
    assert_int_equal(fg_schedule(c, 2, 2, off, NULL, &mk, &imb), FG_ERR_NULL_POINTER);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_balanced_cases),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
