/*
 * Lane layouts of the AMD CDNA matrix instructions (MFMA, wave64) and the way the
 * partial-attention kernel's MFMA path (hip/partial_mfma.hip) tiles a row block onto
 * them. Plain functions, usable from C11 and from device code, so the CPU test
 * (tests/gpu/test_mfma_layout.c) can emulate the instructions lane by lane and prove
 * the kernel's fragment bookkeeping without an AMD GPU.
 *
 * Source of the layouts: AMD's "CDNA Instruction Set Architecture" reference guides
 * (MI100 / CDNA1 and MI200 / CDNA2, chapter "Matrix Arithmetic Instructions") and the
 * AMD Matrix Instruction Calculator (github.com/ROCm/amd_matrix_instruction_calculator,
 * `--get-register` / `--matrix-entry` for v_mfma_f32_32x32x8f16, v_mfma_f32_32x32x4bf16,
 * v_mfma_f32_32x32x8bf16_1k and v_mfma_f32_16x16x16f16), cross-read with public
 * single-wave examples of the builtins (AMD lab notes "AMD matrix cores"). In words,
 * for an M x N x K single-block instruction with B = 64 / M lane groups:
 *  - A (M x K): lane l holds row l % M, and the K/B consecutive k values starting at
 *    (K/B) * (l / M), one per 16-bit element of its operand register(s);
 *  - B (K x N): the mirror image: column l % N, the same k values;
 *  - C/D (M x N, fp32): lane l holds column l % N; for 32x32 its 16 registers r hold
 *    rows 8*(r/4) + 4*(l/32) + r%4, for 16x16 its 4 registers hold rows 4*(l/16) + r.
 * The test holds the calculator's inverse maps (element -> lane, register) written out
 * separately and checks that these forward maps agree with them.
 *
 * These instructions exist only in wave64 (CDNA: gfx908, gfx90a, gfx940); RDNA (wave32)
 * has none that Debian's clang 15 can target, so the MFMA path is wave64-only and its
 * block shape is written for 64-lane waves (fg_mfma_waves_per_block returns 0 for 32).
 */
#ifndef FG_MFMA_LAYOUT_H
#define FG_MFMA_LAYOUT_H

#include "lane_math.h" /* FG_LANE_FN */

/* The only wave size the matrix instructions run in. */
#define FG_MFMA_WAVE 64

/* ------------------------------------------------------------ 32x32x8 (f16, bf16_1k)
 * v_mfma_f32_32x32x8f16 / v_mfma_f32_32x32x8bf16_1k: A 32x8, B 8x32, D 32x32 fp32.
 * Each lane: 4 A elements (j = 0..3), 4 B elements, 16 accumulators (r = 0..15). */
FG_LANE_FN int fg_mfma32_a_row(int lane) { return lane & 31; }
FG_LANE_FN int fg_mfma32_a_k(int lane, int j) { return 4 * (lane >> 5) + j; }
FG_LANE_FN int fg_mfma32_b_col(int lane) { return lane & 31; }
FG_LANE_FN int fg_mfma32_b_k(int lane, int j) { return 4 * (lane >> 5) + j; }
FG_LANE_FN int fg_mfma32_c_row(int lane, int r) { return 8 * (r >> 2) + 4 * (lane >> 5) + (r & 3); }
FG_LANE_FN int fg_mfma32_c_col(int lane, int r) { (void)r; return lane & 31; }

/* v_mfma_f32_32x32x4bf16 (gfx908's bf16, 2 elements a lane): k = 2 * (lane / 32) + j.
 * The kernel keeps one 32x32x8 fragment (4 elements: k8 = 4 * (lane/32) + j) and issues
 * two K4 instructions, the first on elements 0-1, the second on 2-3: instruction `half`
 * sees fragment element j8 = 2 * half + j4 at its own k4 = 2 * (lane/32) + j4. A and B use
 * the same relabelling, so the sum over k is the same sum in another order. This gives
 * the 8-wide k index (of the 32x32x8 fragment) that instruction `half`'s k4 slot carries. */
FG_LANE_FN int fg_mfma32k4_k(int lane, int j) { return 2 * (lane >> 5) + j; }
FG_LANE_FN int fg_mfma32k4_frag_elem(int half, int j4) { return 2 * half + j4; }

/* ------------------------------------------------------------ 16x16x16 (f16, bf16_1k)
 * v_mfma_f32_16x16x16f16: A 16x16, B 16x16, D 16x16 fp32; 4 A, 4 B, 4 accumulators. */
FG_LANE_FN int fg_mfma16_a_row(int lane) { return lane & 15; }
FG_LANE_FN int fg_mfma16_a_k(int lane, int j) { return 4 * (lane >> 4) + j; }
FG_LANE_FN int fg_mfma16_b_col(int lane) { return lane & 15; }
FG_LANE_FN int fg_mfma16_b_k(int lane, int j) { return 4 * (lane >> 4) + j; }
FG_LANE_FN int fg_mfma16_c_row(int lane, int r) { return 4 * (lane >> 4) + r; }
FG_LANE_FN int fg_mfma16_c_col(int lane, int r) { (void)r; return lane & 15; }

/* ------------------------------------------------------------ the attention tiling
 * The kernel computes the transposed products so that every lane owns one query row:
 *   S^T (32 KV x 32 rows) = K (32 KV x 8 dims) . Q^T (8 dims x 32 rows), D/8 steps;
 *   O^T (32 dims x 32 rows) += V^T (32 dims x 8 KV) . P^T (8 KV x 32 rows), 4 steps.
 * With that orientation the accumulator column (lane % 32) is the query row in both
 * products, lanes l and l ^ 32 share a row (the row max / sum need one xor-32 shuffle),
 * and the S^T accumulator registers 4b..4b+3 are exactly the B operand (P^T) of k-step b
 * of the second product: no shuffle and no shared-memory round trip for P. */
#define FG_MFMA_ROWS_PER_WAVE 32 /* query rows one wave owns (the N of both products) */
#define FG_MFMA_KV_TILE 32       /* KV tokens per tile (the M of S^T, the K of O^T) */
#define FG_MFMA_ROW_XOR 32       /* shuffle distance between the two lanes of a row */

/* Waves of the MFMA kernel's block: threads / 64 on wave64, none on wave32. */
FG_LANE_FN int fg_mfma_waves_per_block(int threads, int wave_size) {
    return wave_size == FG_MFMA_WAVE ? threads / wave_size : 0;
}
/* Query rows one row block covers. */
FG_LANE_FN int fg_mfma_rows_per_block(int threads, int wave_size) {
    return fg_mfma_waves_per_block(threads, wave_size) * FG_MFMA_ROWS_PER_WAVE;
}
/* The task-local query row (m, of M = rows * group) that a lane owns in row block mb. */
FG_LANE_FN int fg_mfma_att_row(int mb, int wave, int lane) {
    return mb + wave * FG_MFMA_ROWS_PER_WAVE + fg_mfma32_b_col(lane);
}
/* Q^T operand of dims step s: the 4 consecutive dims a lane loads from its row of Q. */
FG_LANE_FN int fg_mfma_att_q_dim(int lane, int s, int j) { return 8 * s + fg_mfma32_b_k(lane, j); }
/* K operand of dims step s: the lane reads KV token (lane % 32) of the tile, these dims. */
FG_LANE_FN int fg_mfma_att_k_tok(int lane) { return fg_mfma32_a_row(lane); }
FG_LANE_FN int fg_mfma_att_k_dim(int lane, int s, int j) { return 8 * s + fg_mfma32_a_k(lane, j); }
/* S^T accumulator register r holds the score of (tile KV token att_s_tok, row lane % 32). */
FG_LANE_FN int fg_mfma_att_s_tok(int lane, int r) { return fg_mfma32_c_row(lane, r); }
/* P^T operand of KV step b, element j: S^T register 4b + j (KV token 8b + 4*(lane/32) + j). */
FG_LANE_FN int fg_mfma_att_p_reg(int b, int j) { return 4 * b + j; }
/* V^T operand of dim block db, KV step b: the lane reads dim att_v_dim of tokens att_v_tok. */
FG_LANE_FN int fg_mfma_att_v_dim(int lane, int db) { return 32 * db + fg_mfma32_a_row(lane); }
FG_LANE_FN int fg_mfma_att_v_tok(int lane, int b, int j) { return 8 * b + fg_mfma32_a_k(lane, j); }
/* O^T accumulator of dim block db, register r: dim att_o_dim of row lane % 32. Registers
 * 4g .. 4g+3 are 4 consecutive dims, so the epilogue stores 4 values at a time. */
FG_LANE_FN int fg_mfma_att_o_dim(int lane, int db, int r) { return 32 * db + fg_mfma32_c_row(lane, r); }

/* ------------------------------------------------------------ shared-memory tiles
 * K tile: [token][dim] with rows padded by FG_MFMA_K_PAD elements (16 bytes): the 32
 * tokens one K-operand read touches start on different banks, and every address the
 * kernel forms is a per-lane base plus a compile-time offset (an XOR swizzle would cost a
 * register per dims step). V tile: stored transposed, [dim][token] with a padded row of
 * FG_MFMA_VT_STRIDE elements, so that the V^T operand (4 consecutive tokens of one dim) is
 * one 8-byte read and the 32 dims a read touches spread over the banks. */
#define FG_MFMA_K_PAD 8
#define FG_MFMA_VT_STRIDE (FG_MFMA_KV_TILE + 4)
FG_LANE_FN int fg_mfma_k_smem(int tok, int dim, int head_dim) {
    return tok * (head_dim + FG_MFMA_K_PAD) + dim;
}
FG_LANE_FN int fg_mfma_vt_smem(int tok, int dim) { return dim * FG_MFMA_VT_STRIDE + tok; }

/* Tile loader: a block of `threads` copies chunk c (8 elements) of token t of the tile
 * for every flat index i = tid + k * threads < FG_MFMA_KV_TILE * (head_dim / 8). */
FG_LANE_FN int fg_mfma_load_count(int threads, int head_dim) {
    return (FG_MFMA_KV_TILE * (head_dim / 8) + threads - 1) / threads;
}
FG_LANE_FN int fg_mfma_load_tok(int tid, int k, int threads, int head_dim) {
    return (tid + k * threads) / (head_dim / 8);
}
FG_LANE_FN int fg_mfma_load_chunk(int tid, int k, int threads, int head_dim) {
    return (tid + k * threads) % (head_dim / 8);
}

#endif /* FG_MFMA_LAYOUT_H */
