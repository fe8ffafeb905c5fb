/*
 * Property guarded: fg_lpt (src/schedule.h) places every task exactly where the
 * definition of its LPT places it: tasks in run order, each on the block with the
 * least (load, index), loads summed task by task from zero. The reference below scans
 * every block for every task (O(tasks x blocks)), so it shares nothing with fg_lpt's
 * paths (groups of tied blocks, or a walk by blocks with a queue and a heap); both
 * must give the same assignment and the same load bytes. Run lists are random, with
 * many ties: small integer costs (whole classes tie, zero costs), costs that round
 * (sums tie only sometimes), costs that vanish next to a large one (v + c == v), one
 * cost split over several runs, empty runs; few and many blocks, few and many tasks
 * per class (so both paths of fg_lpt run).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schedule.h"

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The definition: each task to the least (load, index), one at a time. */
static void reference_lpt(const double *cost, const int64_t *count, int32_t nr, int32_t B, double *load,
                          int32_t *assign) {
    for (int32_t b = 0; b < B; b++) load[b] = 0.0;
    int64_t at = 0;
    for (int32_t r = 0; r < nr; r++)
        for (int64_t i = 0; i < count[r]; i++) {
            int32_t m = 0;
            for (int32_t b = 1; b < B; b++)
                if (load[b] < load[m]) m = b;
            load[m] += cost[r];
            assign[at++] = m;
        }
}

static void one_case(uint64_t *rng, int32_t B, int32_t nr, int mode) {
    double cost[48];
    int64_t count[48], tasks = 0;
    for (int32_t r = 0; r < nr; r++) {
        switch (mode) {
        case 0: cost[r] = (double)(rng_next(rng) % 5); break;            /* ties, zeros */
        case 1: cost[r] = (double)(rng_next(rng) % 1000) / 7.0; break;   /* rounding */
        case 2: cost[r] = rng_next(rng) % 2 ? 1e16 : 1.0; break;         /* v + c == v */
        default: cost[r] = (double)(rng_next(rng) % 100) * 0.1; break;
        }
        count[r] = (int64_t)(rng_next(rng) % (rng_next(rng) % 2 ? 3 * (uint64_t)B + 1 : 20));
        if (rng_next(rng) % 10 == 0) count[r] = 0;
        tasks += count[r];
    }
    /* callers pass runs by cost, largest first */
    for (int32_t i = 1; i < nr; i++) {
        double c = cost[i];
        int64_t n = count[i];
        int32_t j = i;
        while (j > 0 && cost[j - 1] < c) { cost[j] = cost[j - 1]; count[j] = count[j - 1]; j--; }
        cost[j] = c;
        count[j] = n;
    }
    double *load = malloc(sizeof(double) * (size_t)B), *rload = malloc(sizeof(double) * (size_t)B);
    int32_t *assign = malloc(sizeof(int32_t) * (size_t)(tasks + 1));
    int32_t *rassign = malloc(sizeof(int32_t) * (size_t)(tasks + 1));
    /* one int more than asked, used from an odd start: fg_lpt must align what it needs */
    int32_t *scratch = malloc(sizeof(int32_t) * ((size_t)fg_lpt_scratch_ints(B) + 1));
    assert_non_null(load);
    assert_non_null(rload);
    assert_non_null(assign);
    assert_non_null(rassign);
    assert_non_null(scratch);
    reference_lpt(cost, count, nr, B, rload, rassign);
    fg_lpt(cost, count, nr, B, load, assign, scratch + 1);
    assert_memory_equal(load, rload, sizeof(double) * (size_t)B);
    if (tasks > 0) assert_memory_equal(assign, rassign, sizeof(int32_t) * (size_t)tasks);
    /* without an assignment: the same loads */
    fg_lpt(cost, count, nr, B, load, NULL, scratch);
    assert_memory_equal(load, rload, sizeof(double) * (size_t)B);
    free(load);
    free(rload);
    free(assign);
    free(rassign);
    free(scratch);
}

static void test_random(void **state) {
    (void)state;
    uint64_t rng = 20261123;
    for (int it = 0; it < 10000; it++) {
        int32_t B = 1 + (int32_t)(rng_next(&rng) % (rng_next(&rng) % 4 == 0 ? 300 : 12));
        int32_t nr = (int32_t)(rng_next(&rng) % (rng_next(&rng) % 3 == 0 ? 40 : 8));
        one_case(&rng, B, nr, (int)(rng_next(&rng) % 4));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_random)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
