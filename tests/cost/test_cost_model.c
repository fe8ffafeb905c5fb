/*
 * Guards the cost model (src/cost_model.h): the built-in defaults of every architecture
 * are complete, estimated, within the calibration bounds and follow the kernels' tiles;
 * predictions grow with KV length, rows and partial-state traffic, pad to the kernel's
 * tiles, and split into max(memory, compute) + fixed cost; page gathers get cheaper with
 * bigger pages; the step and floor formulas hold.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cost_model.h"

static const char *const k_archs[] = {"cpu", "sm_80", "sm_90", "gfx908", "gfx90a", "gfx942", "weird"};

static void test_defaults(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++) {
        fg_cost_params p;
        memset(&p, 0x7f, sizeof p);
        fg_cost_defaults(k_archs[i], 0, 0, &p);
        assert_string_equal(p.arch, k_archs[i]);
        assert_int_equal(p.measured, 0);
        assert_non_null(strstr(p.device, "estimated"));
        assert_true(p.compute_units >= 1 && p.blocks_per_unit >= 1 && p.warp_size >= 1);
        assert_true(p.copy_gbs > 0.0 && p.gather_eff > 0.0 && p.gather_eff <= 1.0);
        assert_true(p.mma_tflops_f16 >= p.fma_tflops_f32 && p.fma_tflops_f32 > 0.0);
        assert_true(p.task_fixed_us > 0.0 && p.launch_us > 0.0 && p.merge_us_per_row > 0.0);
        assert_true(p.tile_kv >= 1 && p.tile_rows >= 1);
        assert_true(p.pad_rows >= 1 && p.pad_rows <= p.tile_rows && p.pad_kv >= 1 && p.pad_kv <= p.tile_kv);
        assert_int_equal(fg_cost_blocks(&p), p.compute_units * p.blocks_per_unit);
    }
    fg_cost_params a, b;
    fg_cost_defaults("sm_90", 0, 0, &a);
    assert_int_equal(a.compute_units, 132);
    assert_int_equal(a.warp_size, 32);
    assert_int_equal(a.pad_rows, 16); /* mma.sync m16 */
    fg_cost_defaults("gfx90a", 0, 0, &b);
    assert_int_equal(b.warp_size, 64);
    assert_int_equal(b.compute_units, 110);
    /* A part with fewer units than the datasheet's gets proportionally less. */
    fg_cost_defaults("sm_90", 66, 0, &b);
    assert_true(fabs(b.mma_tflops_f16 - a.mma_tflops_f16 / 2) < 1e-9 && b.copy_gbs < a.copy_gbs);
    /* The CPU: one block per thread, rates per thread. */
    fg_cost_defaults("cpu", 4, 1, &a);
    fg_cost_defaults("cpu", 8, 1, &b);
    assert_int_equal(fg_cost_blocks(&a), 4);
    assert_true(fabs(b.fma_tflops_f32 - 2 * a.fma_tflops_f32) < 1e-12);
    assert_true(a.copy_gbs == 20.0 && fabs(a.fma_tflops_f32 - 0.032) < 1e-12);
}

static void test_predictions(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++) {
        fg_cost_params p;
        fg_cost_defaults(k_archs[i], 0, 0, &p);
        fg_cost_shape s = {4, 128, 128, 2, 2, 16};
        double prev = 0.0;
        for (int64_t kv = p.pad_kv; kv <= 65536 * p.pad_kv; kv *= 4) {
            double t = fg_cost_task_us(&p, &s, 8, 0, kv, 1);
            assert_true(t > prev);
            prev = t;
            double mem = fg_cost_mem_us(&p, &s, 8, 0, kv), cmp = fg_cost_compute_us(&p, &s, 8, kv);
            assert_true(fabs(t - ((mem > cmp ? mem : cmp) + p.task_fixed_us)) < 1e-9 * t);
        }
        /* partial states cost more than direct fp16 outputs */
        assert_true(fg_cost_mem_us(&p, &s, 16, 16, 64) > fg_cost_mem_us(&p, &s, 16, 0, 64));
        /* more rows: more compute and more Q traffic */
        assert_true(fg_cost_compute_us(&p, &s, 64, 4096) > fg_cost_compute_us(&p, &s, 16, 4096));
        /* padding: one row costs what a padded block of rows costs */
        if (p.pad_rows > 1) {
            int32_t r = p.pad_rows / s.group;
            assert_true(fg_cost_compute_us(&p, &s, 1, 64) == fg_cost_compute_us(&p, &s, r > 0 ? r : 1, 64));
        }
        if (p.pad_kv > 1) assert_true(fg_cost_compute_us(&p, &s, 4, 1) == fg_cost_compute_us(&p, &s, 4, p.pad_kv));
        /* gathers: the table's figure at 16-token pages, better with bigger pages */
        assert_true(fabs(fg_cost_gather_eff(&p, 16) - p.gather_eff) < 1e-12);
        assert_true(fg_cost_gather_eff(&p, 1) < fg_cost_gather_eff(&p, 16));
        assert_true(fg_cost_gather_eff(&p, 64) > fg_cost_gather_eff(&p, 16));
        assert_true(fg_cost_gather_eff(&p, 64) <= 1.0);
        /* step and floor */
        assert_true(fabs(fg_cost_step_us(&p, 100.0, 1000, 2) -
                         (100.0 + 2 * p.launch_us + 1000 * p.merge_us_per_row)) < 1e-9);
        double f = fg_cost_floor_us(&p, 1000000000, 0.0);
        assert_true(fabs(f - 1e9 / (p.copy_gbs * 1e3)) < 1e-6 * f);
        f = fg_cost_floor_us(&p, 0, 1e15);
        assert_true(fabs(f - 1e15 / (p.mma_tflops_f16 * 1e6)) < 1e-6 * f);
    }
}

/* Sharing pays in the model: one task over shared KV for 16 rows is cheaper than 16
 * tasks each reading it (what the planner's choice rests on). */
static void test_sharing_pays(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++) {
        fg_cost_params p;
        fg_cost_defaults(k_archs[i], 0, 0, &p);
        fg_cost_shape s = {4, 128, 128, 2, 2, 16};
        double shared = fg_cost_task_us(&p, &s, 16, 16, 4096, 1);
        double alone = 16 * fg_cost_task_us(&p, &s, 1, 1, 4096, 1);
        assert_true(shared < alone);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_predictions),
        cmocka_unit_test(test_sharing_pays),
    };
    return cmocka_run_group_tests_name("cost_model", tests, NULL, NULL);
}
