/*
 * Property guarded: the wave-size-dependent index math of the kernels (hip/lane_math.h)
 * is right for wave 32 and wave 64 — lane masks cover exactly the wave, the portable
 * path's lanes cover every head dim exactly once, the shared-memory swizzle is a
 * permutation whose 8-row groups never share a 16-byte bank group, the mma.sync
 * accumulator and ldmatrix lane maps cover their tiles exactly once, and the tile
 * loader covers every (row, chunk). No AMD GPU is available, so wave64 is proven here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lane_math.h"

static void t_masks(void **state) {
    (void)state;
    assert_true(fg_lane_full_mask(32) == 0xffffffffull);
    assert_true(fg_lane_full_mask(64) == ~0ull);
    assert_int_equal(fg_lane_reduce_steps(32), 5);
    assert_int_equal(fg_lane_reduce_steps(64), 6);
    /* A butterfly of reduce_steps xor-shuffles reaches every lane from lane 0. */
    for (int ws = 32; ws <= 64; ws *= 2) {
        uint64_t reach = 1;
        for (int s = 0; s < fg_lane_reduce_steps(ws); s++) {
            uint64_t next = reach;
            for (int l = 0; l < ws; l++)
                if (reach >> l & 1) next |= (uint64_t)1 << (l ^ (1 << s));
            reach = next;
        }
        assert_true(reach == fg_lane_full_mask(ws));
        assert_int_equal(fg_lane_waves_per_block(256, ws), 256 / ws);
    }
}

static void t_dims_cover(void **state) {
    (void)state;
    static const int dims[] = {8, 64, 72, 128, 136, 256};
    for (int ws = 32; ws <= 64; ws *= 2)
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            int D = dims[di], seen[256];
            memset(seen, 0, sizeof seen);
            int dpl = fg_lane_dims_per_lane(D, ws);
            for (int lane = 0; lane < ws; lane++)
                for (int i = 0; i < dpl; i++) {
                    int d = lane + i * ws;
                    if (d < D) seen[d]++;
                }
            for (int d = 0; d < D; d++) assert_int_equal(seen[d], 1);
        }
}

static void t_swizzle(void **state) {
    (void)state;
    static const int chunks_per_row[] = {8, 16, 32}; /* head dims 64, 128, 256 in fp16 */
    for (size_t ci = 0; ci < 3; ci++) {
        int cpr = chunks_per_row[ci];
        for (int r = 0; r < 64; r++) {
            int seen[32] = {0};
            for (int c = 0; c < cpr; c++) {
                int p = fg_swizzle_chunk(r, c);
                assert_true(p >= 0 && p < cpr);
                seen[p]++;
            }
            for (int c = 0; c < cpr; c++) assert_int_equal(seen[c], 1);
        }
        /* 8 consecutive rows at one logical chunk: 8 distinct bank groups (chunk mod 8,
         * since every row is a multiple of 128 bytes long). */
        for (int r0 = 0; r0 < 64; r0 += 8)
            for (int c = 0; c < cpr; c++) {
                int groups = 0;
                for (int r = r0; r < r0 + 8; r++) groups |= 1 << (fg_swizzle_chunk(r, c) & 7);
                assert_int_equal(groups, 0xff);
            }
    }
}

static void t_mma_maps(void **state) {
    (void)state;
    int seen[16][8];
    memset(seen, 0, sizeof seen);
    for (int lane = 0; lane < 32; lane++)
        for (int i = 0; i < 4; i++) seen[fg_mma_c_row(lane, i)][fg_mma_c_col(lane, i)]++;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 8; c++) assert_int_equal(seen[r][c], 1);
    /* ldmatrix.x4: each of the 4 matrices gets its 8 rows from 8 distinct lanes, and the
     * A / B maps name the (row, chunk) blocks the fragment layouts expect. */
    int a_blocks[2][2] = {{0}}, bk_blocks[2][2] = {{0}}, bv_blocks[2][2] = {{0}};
    for (int lane = 0; lane < 32; lane++) {
        int m = lane >> 3;
        assert_int_equal(fg_ldm_a_row(lane) & 7, lane & 7);
        a_blocks[fg_ldm_a_row(lane) >> 3][fg_ldm_a_chunk(lane)] |= 1 << m;
        bk_blocks[fg_ldm_bk_row(lane) >> 3][fg_ldm_bk_chunk(lane)] |= 1 << m;
        bv_blocks[fg_ldm_bv_row(lane) >> 3][fg_ldm_bv_chunk(lane)] |= 1 << m;
    }
    /* A: matrix 0 rows 0-7 k-lo, 1 rows 8-15 k-lo, 2 rows 0-7 k-hi, 3 rows 8-15 k-hi. */
    assert_int_equal(a_blocks[0][0], 1 << 0);
    assert_int_equal(a_blocks[1][0], 1 << 1);
    assert_int_equal(a_blocks[0][1], 1 << 2);
    assert_int_equal(a_blocks[1][1], 1 << 3);
    /* B from K [n][k]: 0 n-lo k-lo, 1 n-lo k-hi, 2 n-hi k-lo, 3 n-hi k-hi. */
    assert_int_equal(bk_blocks[0][0], 1 << 0);
    assert_int_equal(bk_blocks[0][1], 1 << 1);
    assert_int_equal(bk_blocks[1][0], 1 << 2);
    assert_int_equal(bk_blocks[1][1], 1 << 3);
    /* B from V [k][n] (transposed): 0 k-lo n-lo, 1 k-hi n-lo, 2 k-lo n-hi, 3 k-hi n-hi. */
    assert_int_equal(bv_blocks[0][0], 1 << 0);
    assert_int_equal(bv_blocks[1][0], 1 << 1);
    assert_int_equal(bv_blocks[0][1], 1 << 2);
    assert_int_equal(bv_blocks[1][1], 1 << 3);
}

static void t_loader_cover(void **state) {
    (void)state;
    static const int cprs[] = {8, 16, 32};
    static const int bns[] = {64, 64, 32};
    for (int ci = 0; ci < 3; ci++) {
        int cpr = cprs[ci], bn = bns[ci], threads = 128;
        int rpp = fg_loader_rows_per_pass(threads, cpr);
        static int seen[64][32];
        memset(seen, 0, sizeof seen);
        for (int t = 0; t < threads; t++)
            for (int r = t / cpr; r < bn; r += rpp) seen[r][t % cpr]++;
        for (int r = 0; r < bn; r++)
            for (int c = 0; c < cpr; c++) assert_int_equal(seen[r][c], 1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_masks),     cmocka_unit_test(t_dims_cover), cmocka_unit_test(t_swizzle),
        cmocka_unit_test(t_mma_maps),  cmocka_unit_test(t_loader_cover),
    };
    return cmocka_run_group_tests_name("gpu.lane_math", tests, NULL, NULL);
}
