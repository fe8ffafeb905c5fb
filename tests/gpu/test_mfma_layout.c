/*
 * Property guarded: the AMD MFMA path of the partial-attention kernel
 * (hip/partial_mfma.hip) computes the work-list contract, proven on the CPU because no
 * AMD GPU is available. The matrix instructions are emulated lane by lane from the
 * documented element -> (lane, register) maps (AMD CDNA ISA guides, Matrix Instruction
 * Calculator), written here independently of hip/mfma_layout.h; the kernel's forward maps
 * (lane, register -> element) must be their exact inverses, a GEMM through them must equal
 * a plain loop, and one task's whole attention computation -- Q^T / K / V^T / P^T fragments,
 * masks (segment rank ranges, causal limits, stream end), online softmax across tiles, the
 * xor-32 row shuffles, the epilogue's stores -- run through the same maps must match a
 * double-precision softmax(QK^T)V with LSE in natural log, empty rows giving O = 0 and
 * LSE = -inf. fp16, bf16 on gfx90a/gfx940 (32x32x8bf16_1k) and bf16 on gfx908 (two
 * 32x32x4bf16 per K8 step) are emulated. MFMA is wave64-only; the block shape check
 * covers both wave sizes (wave32 gets no MFMA waves).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "half.h"
#include "mfma_layout.h"

#define WAVE 64

/* ------------------------------------------------------------ the documented maps
 * Element -> (lane, item) as the ISA guide / calculator state them (--get-register),
 * for single-block instructions: A[i][k] lives in lane i + M * (k / KL), item k % KL,
 * with KL = K * M / 64 elements a lane; B[k][j] likewise with j for i; D[i][j] lives in
 * lane j + N * ((i / G) % (64 / N)), register (i % G) + G * (i / (G * 64 / N)), where G
 * is 4 (rows in a lane's register group). */
typedef struct {
    int m, n, k; /* shape */
} shape;
static const shape S32x32x8 = {32, 32, 8}, S16x16x16 = {16, 16, 16}, S32x32x4 = {32, 32, 4};

static int kl(shape s) { return s.k * s.m / WAVE; }
static int doc_a_lane(shape s, int i, int k) { return i + s.m * (k / kl(s)); }
static int doc_a_item(shape s, int k) { return k % kl(s); }
static int doc_b_lane(shape s, int k, int j) { return j + s.n * (k / kl(s)); }
static int doc_b_item(shape s, int k) { return k % kl(s); }
static int doc_d_lane(shape s, int i, int j) { return j + s.n * ((i / 4) % (WAVE / s.n)); }
static int doc_d_reg(shape s, int i) { return (i % 4) + 4 * (i / (4 * WAVE / s.n)); }

/* One instruction: D = A . B + C on per-lane registers (items as floats; products of two
 * 16-bit floats are exact in fp32, accumulation in fp32 as the hardware does). */
static void emulate_mfma(shape s, float a[WAVE][4], float b[WAVE][4], float c[WAVE][16]) {
    float d[32][32];
    for (int i = 0; i < s.m; i++)
        for (int j = 0; j < s.n; j++) {
            float acc = c[doc_d_lane(s, i, j)][doc_d_reg(s, i)];
            for (int k = 0; k < s.k; k++)
                acc += a[doc_a_lane(s, i, k)][doc_a_item(s, k)] * b[doc_b_lane(s, k, j)][doc_b_item(s, k)];
            d[i][j] = acc;
        }
    for (int i = 0; i < s.m; i++)
        for (int j = 0; j < s.n; j++) c[doc_d_lane(s, i, j)][doc_d_reg(s, i)] = d[i][j];
}

/* The kernel's 32x32x8 step for each dtype/target: fp16 and bf16_1k are one instruction;
 * gfx908's bf16 is two 32x32x4 on fragment elements {0,1} then {2,3}. */
enum { MODE_K8 = 0, MODE_K4X2 = 1 };
static void kernel_mfma32(int mode, float a[WAVE][4], float b[WAVE][4], float c[WAVE][16]) {
    if (mode == MODE_K8) {
        emulate_mfma(S32x32x8, a, b, c);
        return;
    }
    for (int half = 0; half < 2; half++) {
        float ah[WAVE][4] = {{0}}, bh[WAVE][4] = {{0}};
        for (int l = 0; l < WAVE; l++)
            for (int j = 0; j < 2; j++) {
                ah[l][j] = a[l][fg_mfma32k4_frag_elem(half, j)];
                bh[l][j] = b[l][fg_mfma32k4_frag_elem(half, j)];
            }
        emulate_mfma(S32x32x4, ah, bh, c);
    }
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static int rndi(int n) { return n > 0 ? (int)(rnd() % (uint32_t)n) : 0; }
static float rndf(void) { return (float)((double)rnd() / 4294967296.0 * 2.0 - 1.0); }

enum { DT_F16 = 0, DT_BF16 = 1 };
static float round16(int dt, float x) {
    return dt == DT_F16 ? fg_half_to_float(fg_float_to_half(x)) : fg_bf16_to_float(fg_float_to_bf16(x));
}

/* ------------------------------------------------------------ layouts */

static void t_layout_inverse(void **state) {
    (void)state;
    for (int lane = 0; lane < WAVE; lane++)
        for (int j = 0; j < 4; j++) {
            /* 32x32x8 operands */
            int i = fg_mfma32_a_row(lane), k = fg_mfma32_a_k(lane, j);
            assert_true(i >= 0 && i < 32 && k >= 0 && k < 8);
            assert_int_equal(doc_a_lane(S32x32x8, i, k), lane);
            assert_int_equal(doc_a_item(S32x32x8, k), j);
            int col = fg_mfma32_b_col(lane), kb = fg_mfma32_b_k(lane, j);
            assert_int_equal(doc_b_lane(S32x32x8, kb, col), lane);
            assert_int_equal(doc_b_item(S32x32x8, kb), j);
            /* 16x16x16 operands */
            i = fg_mfma16_a_row(lane);
            k = fg_mfma16_a_k(lane, j);
            assert_true(i >= 0 && i < 16 && k >= 0 && k < 16);
            assert_int_equal(doc_a_lane(S16x16x16, i, k), lane);
            assert_int_equal(doc_a_item(S16x16x16, k), j);
            assert_int_equal(doc_b_lane(S16x16x16, fg_mfma16_b_k(lane, j), fg_mfma16_b_col(lane)), lane);
            /* 16x16 accumulators */
            i = fg_mfma16_c_row(lane, j);
            assert_int_equal(doc_d_lane(S16x16x16, i, fg_mfma16_c_col(lane, j)), lane);
            assert_int_equal(doc_d_reg(S16x16x16, i), j);
        }
    for (int lane = 0; lane < WAVE; lane++)
        for (int j = 0; j < 2; j++) {
            int k = fg_mfma32k4_k(lane, j);
            assert_int_equal(doc_a_lane(S32x32x4, fg_mfma32_a_row(lane), k), lane);
            assert_int_equal(doc_a_item(S32x32x4, k), j);
        }
    /* 32x32 accumulators: a bijection onto the 32x32 tile, inverse of the documented map. */
    int seen[32][32];
    memset(seen, 0, sizeof seen);
    for (int lane = 0; lane < WAVE; lane++)
        for (int r = 0; r < 16; r++) {
            int i = fg_mfma32_c_row(lane, r), j = fg_mfma32_c_col(lane, r);
            assert_true(i >= 0 && i < 32 && j >= 0 && j < 32);
            seen[i][j]++;
            assert_int_equal(doc_d_lane(S32x32x8, i, j), lane);
            assert_int_equal(doc_d_reg(S32x32x8, i), r);
        }
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < 32; j++) assert_int_equal(seen[i][j], 1);
}

/* The kernel's fusion: S^T accumulator registers 4b..4b+3 are the P^T operand of k-step b. */
static void t_p_reuse(void **state) {
    (void)state;
    for (int lane = 0; lane < WAVE; lane++)
        for (int b = 0; b < FG_MFMA_KV_TILE / 8; b++)
            for (int j = 0; j < 4; j++) {
                const int r = fg_mfma_att_p_reg(b, j);
                assert_int_equal(fg_mfma_att_s_tok(lane, r), 8 * b + fg_mfma32_b_k(lane, j));
                assert_int_equal(fg_mfma32_c_col(lane, r), fg_mfma32_b_col(lane));
            }
    /* The two lanes of a row are l and l ^ 32, and both own it. */
    for (int lane = 0; lane < WAVE; lane++)
        assert_int_equal(fg_mfma_att_row(0, 0, lane), fg_mfma_att_row(0, 0, lane ^ FG_MFMA_ROW_XOR));
}

static void gemm_check(shape s, int mode, int dt) {
    float A[32][16], B[16][32], C[32][32];
    for (int i = 0; i < s.m; i++)
        for (int k = 0; k < s.k; k++) A[i][k] = round16(dt, rndf());
    for (int k = 0; k < s.k; k++)
        for (int j = 0; j < s.n; j++) B[k][j] = round16(dt, rndf());
    for (int i = 0; i < s.m; i++)
        for (int j = 0; j < s.n; j++) C[i][j] = rndf();
    float a[WAVE][4] = {{0}}, b[WAVE][4] = {{0}}, c[WAVE][16] = {{0}};
    /* Through the kernel's forward maps (what each lane loads). */
    for (int lane = 0; lane < WAVE; lane++)
        for (int j = 0; j < 4; j++) {
            if (s.m == 32) {
                a[lane][j] = A[fg_mfma32_a_row(lane)][fg_mfma32_a_k(lane, j)];
                b[lane][j] = B[fg_mfma32_b_k(lane, j)][fg_mfma32_b_col(lane)];
            } else {
                a[lane][j] = A[fg_mfma16_a_row(lane)][fg_mfma16_a_k(lane, j)];
                b[lane][j] = B[fg_mfma16_b_k(lane, j)][fg_mfma16_b_col(lane)];
            }
        }
    const int nreg = s.m == 32 ? 16 : 4;
    for (int lane = 0; lane < WAVE; lane++)
        for (int r = 0; r < nreg; r++)
            c[lane][r] = s.m == 32 ? C[fg_mfma32_c_row(lane, r)][fg_mfma32_c_col(lane, r)]
                                   : C[fg_mfma16_c_row(lane, r)][fg_mfma16_c_col(lane, r)];
    if (s.m == 32)
        kernel_mfma32(mode, a, b, c);
    else
        emulate_mfma(s, a, b, c);
    for (int lane = 0; lane < WAVE; lane++)
        for (int r = 0; r < nreg; r++) {
            const int i = s.m == 32 ? fg_mfma32_c_row(lane, r) : fg_mfma16_c_row(lane, r);
            const int j = s.m == 32 ? fg_mfma32_c_col(lane, r) : fg_mfma16_c_col(lane, r);
            double ref = C[i][j];
            for (int k = 0; k < s.k; k++) ref += (double)A[i][k] * B[k][j];
            /* fp32 accumulation of <= 16 exact products of magnitude <= 1 */
            assert_true(fabs(c[lane][r] - ref) <= 1e-5);
        }
}

static void t_gemm(void **state) {
    (void)state;
    for (int rep = 0; rep < 20; rep++) {
        gemm_check(S32x32x8, MODE_K8, DT_F16);
        gemm_check(S32x32x8, MODE_K8, DT_BF16);
        gemm_check(S32x32x8, MODE_K4X2, DT_BF16);
        gemm_check(S16x16x16, MODE_K8, DT_F16);
    }
}

/* ------------------------------------------------------------ block shape */

static void t_block_shape(void **state) {
    (void)state;
    assert_int_equal(fg_mfma_waves_per_block(128, 64), 2);
    assert_int_equal(fg_mfma_rows_per_block(128, 64), 64);
    assert_int_equal(fg_mfma_waves_per_block(128, 32), 0); /* no MFMA in wave32 */
    assert_int_equal(fg_mfma_rows_per_block(128, 32), 0);
    /* Row blocks x waves x lanes cover rows [0, M) with exactly two lanes each. */
    static const int Ms[] = {1, 4, 31, 32, 33, 63, 64, 65, 130, 257};
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
        const int M = Ms[mi], bm = fg_mfma_rows_per_block(128, 64);
        int cnt[320];
        memset(cnt, 0, sizeof cnt);
        for (int mb = 0; mb < M; mb += bm)
            for (int w = 0; w < 2; w++)
                for (int lane = 0; lane < WAVE; lane++) {
                    const int m = fg_mfma_att_row(mb, w, lane);
                    assert_true(m >= mb && m < mb + bm);
                    if (m < M) cnt[m]++;
                }
        for (int m = 0; m < M; m++) assert_int_equal(cnt[m], 2);
    }
    /* The tile loader covers every (token, chunk) of a tile exactly once. */
    static const int dims[] = {64, 128, 256};
    for (int di = 0; di < 3; di++) {
        const int D = dims[di], cpr = D / 8;
        int seen[FG_MFMA_KV_TILE][32];
        memset(seen, 0, sizeof seen);
        const int lpt = fg_mfma_load_count(128, D);
        assert_int_equal(lpt * 128, FG_MFMA_KV_TILE * cpr);
        for (int tid = 0; tid < 128; tid++)
            for (int i = 0; i < lpt; i++) seen[fg_mfma_load_tok(tid, i, 128, D)][fg_mfma_load_chunk(tid, i, 128, D)]++;
        for (int t = 0; t < FG_MFMA_KV_TILE; t++)
            for (int c = 0; c < cpr; c++) assert_int_equal(seen[t][c], 1);
        /* Shared-memory maps: K and V^T tiles are injective and 8-byte reads stay aligned. */
        assert_int_equal(fg_mfma_k_smem(1, 0, D) % 8, 0);
        assert_int_equal(fg_mfma_vt_smem(0, 1) % 4, 0);
        for (int lane = 0; lane < WAVE; lane++) {
            assert_int_equal(fg_mfma_k_smem(fg_mfma_att_k_tok(lane), fg_mfma_att_k_dim(lane, 0, 0), D) % 4, 0);
            assert_int_equal(fg_mfma_vt_smem(fg_mfma_att_v_tok(lane, 1, 0), fg_mfma_att_v_dim(lane, 0)) % 4, 0);
        }
    }
}

/* ------------------------------------------------------------ one task, emulated */

#define MAXM 160
#define MAXL 200
#define MAXD 128

typedef struct {
    int D, M, L, dt, mode;
    float q[MAXM][MAXD];          /* rounded to the dtype */
    float k[MAXL][MAXD], v[MAXL][MAXD];
    int pos[MAXL], lo[MAXL], hi[MAXL]; /* per stream token: KV position, segment rank range */
    int rank[MAXM], limit[MAXM];  /* per row */
    float o[MAXM][MAXD], lse[MAXM];
    int o_written[MAXM][MAXD], lse_written[MAXM];
} task;

/* The kernel's per-wave algorithm (hip/partial_mfma.hip), one row block and wave at a time,
 * every lane's registers explicit, every cross-lane value through the emulated xor shuffle. */
static void run_kernel_emulated(task *t) {
    const int D = t->D, NDB = D / 32, BN = FG_MFMA_KV_TILE, threads = 128;
    const float sl2 = (float)(1.0 / sqrt((double)D)) * 1.4426950408889634f;
    static float Ks[FG_MFMA_KV_TILE * (MAXD + FG_MFMA_K_PAD)], Vt[MAXD * FG_MFMA_VT_STRIDE];
    static int mpos[FG_MFMA_KV_TILE], mlo[FG_MFMA_KV_TILE], mhi[FG_MFMA_KV_TILE];
    const int bm = fg_mfma_rows_per_block(threads, WAVE);
    for (int mb = 0; mb < t->M; mb += bm)
        for (int w = 0; w < fg_mfma_waves_per_block(threads, WAVE); w++) {
            if (mb + w * FG_MFMA_ROWS_PER_WAVE >= t->M) continue; /* inactive wave */
            static float qf[WAVE][MAXD / 8][4], oacc[WAVE][MAXD / 32][16];
            float rmax[WAVE], rsum[WAVE];
            int rrank[WAVE], rlim[WAVE], rm[WAVE];
            for (int lane = 0; lane < WAVE; lane++) {
                const int m = fg_mfma_att_row(mb, w, lane);
                rm[lane] = m;
                rrank[lane] = m < t->M ? t->rank[m] : INT32_MIN;
                rlim[lane] = m < t->M ? t->limit[m] : 0;
                for (int s = 0; s < D / 8; s++)
                    for (int j = 0; j < 4; j++) qf[lane][s][j] = m < t->M ? t->q[m][fg_mfma_att_q_dim(lane, s, j)] : 0.f;
                for (int db = 0; db < NDB; db++)
                    for (int r = 0; r < 16; r++) oacc[lane][db][r] = 0.f;
                rmax[lane] = -INFINITY;
                rsum[lane] = 0.f;
            }
            const int ntiles = (t->L + BN - 1) / BN;
            for (int ti = 0; ti < ntiles; ti++) {
                /* Loader: every thread's chunks into the tiles (zeros past the end). */
                for (int tid = 0; tid < threads; tid++)
                    for (int i = 0; i < fg_mfma_load_count(threads, D); i++) {
                        const int r = fg_mfma_load_tok(tid, i, threads, D), c = fg_mfma_load_chunk(tid, i, threads, D);
                        const int idx = ti * BN + r;
                        for (int e = 0; e < 8; e++) {
                            Ks[fg_mfma_k_smem(r, c * 8 + e, D)] = idx < t->L ? t->k[idx][c * 8 + e] : 0.f;
                            Vt[fg_mfma_vt_smem(r, c * 8 + e)] = idx < t->L ? t->v[idx][c * 8 + e] : 0.f;
                        }
                        if (c == 0) {
                            mpos[r] = idx < t->L ? t->pos[idx] : INT32_MAX;
                            mlo[r] = idx < t->L ? t->lo[idx] : INT32_MAX;
                            mhi[r] = idx < t->L ? t->hi[idx] : INT32_MIN;
                        }
                    }
                /* S^T = K . Q^T */
                static float sacc[WAVE][16];
                memset(sacc, 0, sizeof sacc);
                for (int s = 0; s < D / 8; s++) {
                    float a[WAVE][4], b[WAVE][4];
                    for (int lane = 0; lane < WAVE; lane++)
                        for (int j = 0; j < 4; j++) {
                            a[lane][j] = Ks[fg_mfma_k_smem(fg_mfma_att_k_tok(lane), fg_mfma_att_k_dim(lane, s, j), D)];
                            b[lane][j] = qf[lane][s][j];
                        }
                    kernel_mfma32(t->mode, a, b, sacc);
                }
                /* Mask, scale, tile max, xor-32 shuffle, online softmax. */
                float tmax[WAVE], alpha[WAVE], base[WAVE];
                for (int lane = 0; lane < WAVE; lane++) {
                    tmax[lane] = -INFINITY;
                    for (int r = 0; r < 16; r++) {
                        const int tok = fg_mfma_att_s_tok(lane, r);
                        const int vis = mlo[tok] <= rrank[lane] && rrank[lane] < mhi[tok] && mpos[tok] < rlim[lane];
                        sacc[lane][r] = vis ? sacc[lane][r] * sl2 : -INFINITY;
                        tmax[lane] = fmaxf(tmax[lane], sacc[lane][r]);
                    }
                }
                float shuf[WAVE];
                for (int lane = 0; lane < WAVE; lane++) shuf[lane] = tmax[lane ^ FG_MFMA_ROW_XOR];
                for (int lane = 0; lane < WAVE; lane++) {
                    tmax[lane] = fmaxf(tmax[lane], shuf[lane]);
                    const float mn = fmaxf(rmax[lane], tmax[lane]);
                    base[lane] = mn == -INFINITY ? 0.f : mn;
                    alpha[lane] = exp2f(rmax[lane] - base[lane]);
                    rmax[lane] = mn;
                    rsum[lane] *= alpha[lane];
                    for (int r = 0; r < 16; r++) {
                        const float p = exp2f(sacc[lane][r] - base[lane]);
                        sacc[lane][r] = p;
                        rsum[lane] += p;
                    }
                    for (int db = 0; db < NDB; db++)
                        for (int r = 0; r < 16; r++) oacc[lane][db][r] *= alpha[lane];
                }
                /* O^T += V^T . P^T, P^T straight from the S^T registers (rounded to the dtype). */
                for (int b = 0; b < BN / 8; b++) {
                    float pf[WAVE][4];
                    for (int lane = 0; lane < WAVE; lane++)
                        for (int j = 0; j < 4; j++) pf[lane][j] = round16(t->dt, sacc[lane][fg_mfma_att_p_reg(b, j)]);
                    for (int db = 0; db < NDB; db++) {
                        float a[WAVE][4];
                        for (int lane = 0; lane < WAVE; lane++)
                            for (int j = 0; j < 4; j++)
                                a[lane][j] = Vt[fg_mfma_vt_smem(fg_mfma_att_v_tok(lane, b, j), fg_mfma_att_v_dim(lane, db))];
                        float c[WAVE][16];
                        for (int lane = 0; lane < WAVE; lane++) memcpy(c[lane], oacc[lane][db], sizeof c[lane]);
                        kernel_mfma32(t->mode, a, pf, c);
                        for (int lane = 0; lane < WAVE; lane++) memcpy(oacc[lane][db], c[lane], sizeof c[lane]);
                    }
                }
            }
            /* Epilogue. */
            float shuf[WAVE];
            for (int lane = 0; lane < WAVE; lane++) shuf[lane] = rsum[lane ^ FG_MFMA_ROW_XOR];
            for (int lane = 0; lane < WAVE; lane++) {
                const int m = rm[lane];
                if (m >= t->M) continue;
                const float l = rsum[lane] + shuf[lane];
                const float inv = l > 0.f ? 1.f / l : 0.f;
                for (int db = 0; db < NDB; db++)
                    for (int r = 0; r < 16; r++) {
                        const int d = fg_mfma_att_o_dim(lane, db, r);
                        if (r % 4 != 0) /* stores are 4 consecutive dims from register 4g */
                            assert_int_equal(d, fg_mfma_att_o_dim(lane, db, r - r % 4) + r % 4);
                        t->o[m][d] = oacc[lane][db][r] * inv;
                        t->o_written[m][d]++;
                    }
                if (lane < FG_MFMA_ROW_XOR) {
                    t->lse[m] = l > 0.f ? rmax[lane] * 0.6931471805599453f + logf(l) : -INFINITY;
                    t->lse_written[m]++;
                }
            }
        }
}

static void check_task(task *t) {
    const double scale = 1.0 / sqrt((double)t->D);
    const double tol = t->dt == DT_F16 ? 2e-3 : 1.5e-2; /* P rounded to fp16 / bf16 before P.V */
    int empty = 0;
    for (int m = 0; m < t->M; m++) {
        assert_int_equal(t->lse_written[m], 1);
        double mx = -INFINITY, sc[MAXL];
        for (int i = 0; i < t->L; i++) {
            const int vis = t->lo[i] <= t->rank[m] && t->rank[m] < t->hi[i] && t->pos[i] < t->limit[m];
            double s = 0;
            for (int d = 0; d < t->D; d++) s += (double)t->q[m][d] * t->k[i][d];
            sc[i] = vis ? s * scale : -INFINITY;
            if (sc[i] > mx) mx = sc[i];
        }
        double sum = 0, o[MAXD] = {0};
        if (mx != -INFINITY)
            for (int i = 0; i < t->L; i++) {
                const double p = exp(sc[i] - mx);
                sum += p;
                for (int d = 0; d < t->D; d++) o[d] += p * t->v[i][d];
            }
        if (sum == 0) {
            empty++;
            assert_true(isinf(t->lse[m]) && t->lse[m] < 0);
        } else {
            assert_true(fabs(t->lse[m] - (mx + log(sum))) <= 1e-4 * (1 + fabs(mx)));
        }
        for (int d = 0; d < t->D; d++) {
            assert_int_equal(t->o_written[m][d], 1);
            const double ref = sum > 0 ? o[d] / sum : 0.0;
            assert_false(isnan(t->o[m][d]));
            if (fabs(t->o[m][d] - ref) > tol)
                fail_msg("row %d dim %d: %.6f vs %.6f (M %d L %d D %d dt %d mode %d)", m, d, t->o[m][d], ref,
                         t->M, t->L, t->D, t->dt, t->mode);
        }
    }
    (void)empty;
}

/* A random task like the planner's: a few segments (some empty, some visible to a rank
 * sub-range only: folded short nodes), rows of several requests x group heads, causal
 * limits (some rows see nothing), M crossing the 32-row wave and 64-row block edges. */
static void random_task(task *t, int D, int dt, int mode) {
    memset(t, 0, sizeof *t);
    t->D = D;
    t->dt = dt;
    t->mode = mode;
    const int group = 1 + rndi(5), nrows = 1 + rndi(MAXM / group);
    t->M = nrows * group;
    const int nranks = 1 + rndi(8);
    int L = 0, kvpos = 0;
    const int nseg = 1 + rndi(5);
    for (int sgi = 0; sgi < nseg && L < MAXL; sgi++) {
        int len = rndi(4) == 0 ? 0 : 1 + rndi(70);
        if (L + len > MAXL) len = MAXL - L;
        int lo = 0, hi = nranks;
        if (rndi(2)) {
            lo = rndi(nranks);
            hi = lo + 1 + rndi(nranks - lo);
        }
        for (int i = 0; i < len; i++) {
            t->pos[L + i] = kvpos + i;
            t->lo[L + i] = lo;
            t->hi[L + i] = hi;
        }
        kvpos += len;
        L += len;
    }
    t->L = L;
    for (int i = 0; i < L; i++)
        for (int d = 0; d < D; d++) {
            t->k[i][d] = round16(dt, rndf());
            t->v[i][d] = round16(dt, rndf());
        }
    for (int r = 0; r < nrows; r++) {
        const int rank = rndi(nranks + 1); /* nranks: outside every segment -> empty row */
        const int limit = rndi(5) == 0 ? rndi(kvpos + 1) : kvpos + rndi(3);
        for (int g = 0; g < group; g++) {
            const int m = r * group + g;
            t->rank[m] = rank;
            t->limit[m] = limit;
            for (int d = 0; d < D; d++) t->q[m][d] = round16(dt, rndf());
        }
    }
}

static void run_cases(int D, int dt, int mode, int reps) {
    static task t;
    for (int rep = 0; rep < reps; rep++) {
        random_task(&t, D, dt, mode);
        run_kernel_emulated(&t);
        check_task(&t);
    }
}

static void t_attention_fp16(void **state) {
    (void)state;
    run_cases(64, DT_F16, MODE_K8, 12);
    run_cases(128, DT_F16, MODE_K8, 4);
}
static void t_attention_bf16_1k(void **state) { /* gfx90a, gfx940 */
    (void)state;
    run_cases(64, DT_BF16, MODE_K8, 8);
}
static void t_attention_bf16_gfx908(void **state) {
    (void)state;
    run_cases(64, DT_BF16, MODE_K4X2, 8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_layout_inverse),   cmocka_unit_test(t_p_reuse),
        cmocka_unit_test(t_gemm),             cmocka_unit_test(t_block_shape),
        cmocka_unit_test(t_attention_fp16),   cmocka_unit_test(t_attention_bf16_1k),
        cmocka_unit_test(t_attention_bf16_gfx908),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
