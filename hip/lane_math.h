/*
 * Index math that depends on the wave (warp) size or on the matrix-instruction
 * fragment layouts. Plain functions, usable from C11 and from the kernels, so the
 * CPU tests (tests/gpu/test_lane_math.c) can check them for wave 32 and wave 64:
 * no AMD GPU is available to run the wave64 paths, so this is where they are proven.
 */
#ifndef FG_LANE_MATH_H
#define FG_LANE_MATH_H

#include <stdint.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FG_LANE_FN static inline __host__ __device__
#else
#define FG_LANE_FN static inline
#endif

/* Every shuffle takes a 64-bit lane mask so one signature serves wave32 and wave64. */
FG_LANE_FN uint64_t fg_lane_full_mask(int wave_size) {
    return wave_size >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << wave_size) - 1u);
}

/* log2 of the wave size: the butterfly steps of a wave-wide reduction. */
FG_LANE_FN int fg_lane_reduce_steps(int wave_size) {
    int s = 0;
    while ((1 << s) < wave_size) s++;
    return s;
}

/* The portable (non-matrix) path gives each lane the dims d = lane + i * wave_size;
 * this is how many it holds (head dims are multiples of 8, so the last lanes may
 * hold one fewer). */
FG_LANE_FN int fg_lane_dims_per_lane(int head_dim, int wave_size) {
    return (head_dim + wave_size - 1) / wave_size;
}

/* Waves of a block: block sizes are fixed per kernel (they must agree between the
 * host and device compilation passes), so the wave count varies with the target. */
FG_LANE_FN int fg_lane_waves_per_block(int threads, int wave_size) {
    return threads / wave_size;
}

/* Shared-memory tiles hold rows of 16-byte chunks; chunk c of row r lives at
 * c ^ (r & 7), so the 8 rows one ldmatrix (or one MFMA operand read) touches at the
 * same logical chunk hit 8 different 16-byte bank groups. rows must hold >= 8 chunks. */
FG_LANE_FN int fg_swizzle_chunk(int row, int chunk) { return chunk ^ (row & 7); }

/* mma.sync m16n8k16 accumulator layout (NVIDIA, warp 32): lane holds c[i] at
 * row (lane/4) + 8*(i/2), column 2*(lane%4) + (i%2). */
FG_LANE_FN int fg_mma_c_row(int lane, int i) { return (lane >> 2) + 8 * (i >> 1); }
FG_LANE_FN int fg_mma_c_col(int lane, int i) { return 2 * (lane & 3) + (i & 1); }

/* ldmatrix.x4: lane supplies the address of row (lane % 8) of matrix (lane / 8).
 * For the A operand (16 rows x 16 k) matrices are ordered (rows 0-7, k 0-7),
 * (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15). */
FG_LANE_FN int fg_ldm_a_row(int lane) { return ((lane >> 3) & 1) * 8 + (lane & 7); }
FG_LANE_FN int fg_ldm_a_chunk(int lane) { return lane >> 4; }
/* B operand from a [n][k] tile (K rows): matrices (n 0-7, k 0-7), (n 0-7, k 8-15),
 * (n 8-15, k 0-7), (n 8-15, k 8-15): registers 0,1 serve n-tile 0 and 2,3 n-tile 1. */
FG_LANE_FN int fg_ldm_bk_row(int lane) { return (lane >> 4) * 8 + (lane & 7); }
FG_LANE_FN int fg_ldm_bk_chunk(int lane) { return (lane >> 3) & 1; }
/* B operand from a [k][n] tile (V rows) through ldmatrix.trans: matrices (k 0-7, n 0-7),
 * (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15). */
FG_LANE_FN int fg_ldm_bv_row(int lane) { return ((lane >> 3) & 1) * 8 + (lane & 7); }
FG_LANE_FN int fg_ldm_bv_chunk(int lane) { return lane >> 4; }

/* Tile loader: `threads` threads copy rows of `chunks_per_row` 16-byte chunks; thread
 * t copies chunk (t % chunks_per_row) of rows (t / chunks_per_row) + k * rows_per_pass. */
FG_LANE_FN int fg_loader_rows_per_pass(int threads, int chunks_per_row) {
    return threads / chunks_per_row;
}

#endif /* FG_LANE_MATH_H */
