/*
 * Partial attention over the plan's work list on AMD's matrix cores (MFMA, CDNA wave64:
 * gfx908 MI100, gfx90a MI200, gfx940 MI300). The same contract as the kernels of
 * hip/attention.hip (src/worklist.h): block b runs tasks block_task[block_task_off[b] ..
 * block_task_off[b+1]); a task is (item, KV head); its query rows are (row of the item) x
 * (query heads of the KV head), M = rows * group, taken in row blocks of 64 (2 waves x 32);
 * the item's segments are concatenated into one stream of KV positions (folded short
 * nodes share a tile), and the per-token segment rank range, the row's rank and its causal
 * limit form the mask. A row with no visible key gets O = 0 and LSE = -inf; LSE is in
 * natural log; partial states (slot >= 0) are fp32 O normalised by the row's sum.
 *
 * Per 32-token KV tile and wave (hip/mfma_layout.h has the lane maps and why):
 *   S^T = K . Q^T     D/8 x v_mfma_f32_32x32x8{f16,bf16_1k} (gfx908 bf16: 2 x 32x32x4bf16)
 *   online softmax    fp32, base 2 with the scale folded in, one xor-32 shuffle per row
 *   O^T += V^T . P^T  4 x D/32 MFMAs; P^T is the S^T accumulator, repacked in registers.
 * Q stays in registers for the whole row block (its fragment is 8 bytes a lane a step;
 * at head_dim 256 it is re-read from global memory, L1/L2 resident, to stay within the
 * register file). K and V tiles go through shared memory (K rows padded, V transposed); gfx9 has no
 * asynchronous global->LDS copy, so the next tile is prefetched into registers while the
 * matrix cores work on this one, and written to LDS after the next barrier.
 *
 * Only the device passes of the CDNA targets carry the MFMA code; other passes (gfx1030,
 * wave32) compile an empty stub, and the host launches this path only on the CDNA
 * devices (fg_partial_mfma_arch_supported). CUDA builds compile nothing from this file.
 */
#include <limits.h>
#include <math.h>

#include "compat.h"
#include "mfma_layout.h"
#include "partial_mfma.h"

#if FG_HIP

#if defined(__HIP_DEVICE_COMPILE__) && (defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx940__))
#define FG_MFMA_DEVICE 1
#else
#define FG_MFMA_DEVICE 0
#endif

namespace {

__attribute__((unused)) constexpr float kLog2e = 1.4426950408889634f;
__attribute__((unused)) constexpr float kLn2 = 0.6931471805599453f;

constexpr int kThreads = FG_MFMA_THREADS;
__attribute__((unused)) constexpr int kWaves = kThreads / FG_MFMA_WAVE;
__attribute__((unused)) constexpr int kBM = kWaves * FG_MFMA_ROWS_PER_WAVE; /* query rows per row block */
__attribute__((unused)) constexpr int kBN = FG_MFMA_KV_TILE;                /* KV tokens per tile */
__attribute__((unused)) constexpr int kSegCap = 64;                         /* segments staged in shared memory at once */

typedef float f32x16 __attribute__((ext_vector_type(16)));
typedef float f32x4 __attribute__((ext_vector_type(4)));
typedef uint32_t u32x2 __attribute__((ext_vector_type(2)));
typedef _Float16 f16x4 __attribute__((ext_vector_type(4)));
typedef short i16x4 __attribute__((ext_vector_type(4)));
typedef short i16x2 __attribute__((ext_vector_type(2)));

/* D += A . B for one 32x32x8 step; a and b are the raw 16-bit patterns of the lane's 4
 * operand elements (hip/mfma_layout.h, fg_mfma32_*). */
template <int T> __device__ __forceinline__ f32x16 mfma32x32x8(u32x2 a, u32x2 b, f32x16 c) {
#if FG_MFMA_DEVICE
    if (T == FG_T_F16) { /* both builtins exist on every CDNA target: a plain if is enough */
        return __builtin_amdgcn_mfma_f32_32x32x8f16(__builtin_bit_cast(f16x4, a),
                                                    __builtin_bit_cast(f16x4, b), c, 0, 0, 0);
    } else {
#if defined(__gfx908__)
        /* CDNA1 has no bf16_1k: two K4 steps, elements 0-1 then 2-3 of the fragment
         * (fg_mfma32k4_frag_elem); A and B are relabelled alike, so the sum is the same. */
        c = __builtin_amdgcn_mfma_f32_32x32x4bf16(__builtin_bit_cast(i16x2, a.x),
                                                  __builtin_bit_cast(i16x2, b.x), c, 0, 0, 0);
        return __builtin_amdgcn_mfma_f32_32x32x4bf16(__builtin_bit_cast(i16x2, a.y),
                                                     __builtin_bit_cast(i16x2, b.y), c, 0, 0, 0);
#else
        return __builtin_amdgcn_mfma_f32_32x32x8bf16_1k(__builtin_bit_cast(i16x4, a),
                                                        __builtin_bit_cast(i16x4, b), c, 0, 0, 0);
#endif
    }
#else
    (void)a;
    (void)b;
    return c;
#endif
}

__attribute__((unused)) __device__ __forceinline__ void store_lse(const fg_kernel_args &a, int qtok, int h, int hl, int slot,
                                          float lse) {
    if (slot < 0) {
        if (a.lse) a.lse[(int64_t)qtok * a.lse_stride_token + (int64_t)h * a.lse_stride_head] = lse;
    } else {
        a.partial_lse[(size_t)slot * (a.kv_head_count * a.group) + hl] = lse;
    }
}

template <int T, int D>
__global__ void __launch_bounds__(kThreads) partial_mfma(fg_kernel_args a) {
#if FG_MFMA_DEVICE
    static_assert(FG_WAVE_SIZE == FG_MFMA_WAVE, "MFMA runs in wave64 only");
    constexpr int CPR = D / 8;                 /* 16-byte chunks per K / V row */
    constexpr int LPT = kBN * CPR / kThreads;  /* chunks of K (and of V) per thread per tile */
    constexpr int NDB = D / 32;                /* 32-dim blocks of the O^T accumulator */
    static_assert(kBN * CPR % kThreads == 0, "the tile loader covers the tile exactly");
    constexpr bool kQRegs = D <= 128;          /* Q fragment held in registers */
    __shared__ __attribute__((aligned(16))) uint16_t Ks[kBN * (D + FG_MFMA_K_PAD)];
    __shared__ __attribute__((aligned(16))) uint16_t Vt[D * FG_MFMA_VT_STRIDE];
    __shared__ int meta_pos[kBN], meta_lo[kBN], meta_hi[kBN];
    __shared__ int seg_cum[kSegCap + 1], seg_pb[kSegCap], seg_beg[kSegCap], seg_lo[kSegCap],
        seg_hi[kSegCap];

    const int tid = threadIdx.x, wave = tid / FG_WAVE_SIZE, lane = tid % FG_WAVE_SIZE;
    const uint64_t full = fg_lane_full_mask(FG_WAVE_SIZE);
    const uint16_t *q = (const uint16_t *)a.q;
    const uint16_t *k = (const uint16_t *)a.k;
    const uint16_t *v = (const uint16_t *)a.v;
    const float sl2 = a.scale * kLog2e;

    for (int bt = a.block_task_off[blockIdx.x]; bt < a.block_task_off[blockIdx.x + 1]; ++bt) {
        const int task = a.block_task[bt];
        const int item = task / a.kv_head_count, g = task % a.kv_head_count;
        const int kvh = a.kv_head_begin + g;
        const int row0 = a.item_row_off[item], nrows = a.item_row_off[item + 1] - row0;
        const int seg0 = a.item_seg_off[item], nseg = a.item_seg_off[item + 1] - seg0;
        const int M = nrows * a.group;
        const int64_t k_head = (int64_t)kvh * a.k_stride_head, v_head = (int64_t)kvh * a.v_stride_head;

        for (int mb = 0; mb < M; mb += kBM) {
            /* The lane's query row (lanes l and l ^ 32 share it) and its Q^T fragment. */
            const int m = fg_mfma_att_row(mb, wave, lane);
            int rrank = INT_MIN, rlim = 0, rslot = -1, rqtok = -1, rh = -1, rhl = -1;
            u32x2 qf[kQRegs ? D / 8 : 1];
            const uint16_t *qp = q;
            if (m < M) {
                const fg_row r = a.row[row0 + m / a.group];
                rrank = r.rank;
                rlim = r.limit;
                rslot = r.slot;
                rqtok = r.qtok;
                rh = kvh * a.group + m % a.group;
                rhl = g * a.group + m % a.group;
                qp = q + (int64_t)rqtok * a.q_stride_token + (int64_t)rh * a.q_stride_head;
            }
            auto qfrag = [&](int s) -> u32x2 {
                return m < M ? *(const u32x2 *)(qp + fg_mfma_att_q_dim(lane, s, 0)) : u32x2{0u, 0u};
            };
            if (kQRegs) {
#pragma unroll
                for (int s = 0; s < D / 8; s++) qf[kQRegs ? s : 0] = qfrag(s);
            }
            const bool wave_active = mb + wave * FG_MFMA_ROWS_PER_WAVE < M; /* wave-uniform */
            f32x16 oacc[NDB];
#pragma unroll
            for (int db = 0; db < NDB; db++) oacc[db] = f32x16(0.f);
            float rmax = -INFINITY, rsum = 0.f;

            for (int sc = 0; sc < nseg; sc += kSegCap) {
                const int ns = min(kSegCap, nseg - sc);
                __syncthreads(); /* the previous chunk's tiles and segment table are consumed */
                if (tid < ns) {
                    const fg_work_seg sg = a.seg[seg0 + sc + tid];
                    seg_pb[tid] = sg.page_base;
                    seg_beg[tid] = sg.kv_begin;
                    seg_lo[tid] = sg.rank_lo;
                    seg_hi[tid] = sg.rank_hi;
                    seg_cum[tid + 1] = sg.kv_end - sg.kv_begin;
                }
                __syncthreads();
                if (tid == 0) {
                    int acc = 0;
                    seg_cum[0] = 0;
                    for (int i = 1; i <= ns; i++) { acc += seg_cum[i]; seg_cum[i] = acc; }
                }
                __syncthreads();
                const int L = seg_cum[ns];
                const int ntiles = (L + kBN - 1) / kBN;

                /* Segment of stream position idx < L: the last one starting at or before it
                 * (empty segments never win, they start where the next one does). */
                auto find_seg = [&](int idx) {
                    int lo = 0, hi = ns;
                    while (hi - lo > 1) {
                        const int mid = (lo + hi) >> 1;
                        if (seg_cum[mid] <= idx) lo = mid; else hi = mid;
                    }
                    return lo;
                };
                /* Registers holding the next tile: LPT 16-byte chunks of K and of V. Tokens
                 * past the stream's end are zeros (masked columns never read stale, possibly
                 * NaN, memory). */
                fg_vec16 kr[LPT], vr[LPT];
                auto fetch = [&](int t) {
#pragma unroll
                    for (int i = 0; i < LPT; i++) {
                        const int r = fg_mfma_load_tok(tid, i, kThreads, D);
                        const int c = fg_mfma_load_chunk(tid, i, kThreads, D);
                        const int idx = t * kBN + r;
                        kr[i] = vr[i] = make_uint4(0u, 0u, 0u, 0u);
                        if (idx < L) {
                            const int lo = find_seg(idx);
                            const int p = seg_beg[lo] + idx - seg_cum[lo];
                            const int64_t pg = a.page[seg_pb[lo] + p / a.page_size];
                            const int64_t slot = p % a.page_size;
                            kr[i] = *(const fg_vec16 *)(k + pg * a.k_stride_page + slot * a.k_stride_token + k_head + c * 8);
                            vr[i] = *(const fg_vec16 *)(v + pg * a.v_stride_page + slot * a.v_stride_token + v_head + c * 8);
                        }
                    }
                };

                if (ntiles > 0) fetch(0);
                for (int t = 0; t < ntiles; ++t) {
                    __syncthreads(); /* every wave is done reading the previous tile */
#pragma unroll
                    for (int i = 0; i < LPT; i++) {
                        const int r = fg_mfma_load_tok(tid, i, kThreads, D);
                        const int c = fg_mfma_load_chunk(tid, i, kThreads, D);
                        *(fg_vec16 *)(Ks + fg_mfma_k_smem(r, c * 8, D)) = kr[i];
                        const uint32_t w[4] = {vr[i].x, vr[i].y, vr[i].z, vr[i].w};
#pragma unroll
                        for (int e = 0; e < 8; e++)
                            Vt[fg_mfma_vt_smem(r, c * 8 + e)] = (uint16_t)(w[e >> 1] >> (16 * (e & 1)));
                        if (c == 0) { /* the token's mask data: an empty rank range past the end */
                            const int idx = t * kBN + r;
                            int pos = INT_MAX, lo_r = INT_MAX, hi_r = INT_MIN;
                            if (idx < L) {
                                const int sgi = find_seg(idx);
                                pos = seg_beg[sgi] + idx - seg_cum[sgi];
                                lo_r = seg_lo[sgi];
                                hi_r = seg_hi[sgi];
                            }
                            meta_pos[r] = pos;
                            meta_lo[r] = lo_r;
                            meta_hi[r] = hi_r;
                        }
                    }
                    __syncthreads(); /* tile t visible to every wave */
                    if (t + 1 < ntiles) fetch(t + 1); /* in flight while the MFMAs run */
                    if (!wave_active) continue;

                    f32x16 sacc = f32x16(0.f);
#pragma unroll
                    for (int s = 0; s < D / 8; s++) {
                        const u32x2 kf = *(const u32x2 *)(Ks + fg_mfma_k_smem(fg_mfma_att_k_tok(lane),
                                                                               fg_mfma_att_k_dim(lane, s, 0), D));
                        sacc = mfma32x32x8<T>(kf, kQRegs ? qf[kQRegs ? s : 0] : qfrag(s), sacc);
                    }
                    /* Mask (segment rank range, causal limit, past the stream's end), scale,
                     * and the online-softmax update of the lane's row. */
                    float tmax = -INFINITY;
#pragma unroll
                    for (int r = 0; r < 16; r++) {
                        const int tok = fg_mfma_att_s_tok(lane, r);
                        const bool vis = meta_lo[tok] <= rrank && rrank < meta_hi[tok] && meta_pos[tok] < rlim;
                        const float s = vis ? sacc[r] * sl2 : -INFINITY;
                        sacc[r] = s;
                        tmax = fmaxf(tmax, s);
                    }
                    tmax = fmaxf(tmax, fg_shfl_xor(full, tmax, FG_MFMA_ROW_XOR));
                    const float mn = fmaxf(rmax, tmax);
                    const float base = mn == -INFINITY ? 0.f : mn; /* no key yet: avoid -inf - -inf */
                    const float alpha = exp2f(rmax - base);
                    rmax = mn;
                    rsum *= alpha;
#pragma unroll
                    for (int r = 0; r < 16; r++) {
                        const float p = exp2f(sacc[r] - base);
                        sacc[r] = p;
                        rsum += p;
                    }
#pragma unroll
                    for (int db = 0; db < NDB; db++) oacc[db] *= alpha;
#pragma unroll
                    for (int b = 0; b < kBN / 8; b++) {
                        const u32x2 pf = {fg_pack2<T>(sacc[fg_mfma_att_p_reg(b, 0)], sacc[fg_mfma_att_p_reg(b, 1)]),
                                          fg_pack2<T>(sacc[fg_mfma_att_p_reg(b, 2)], sacc[fg_mfma_att_p_reg(b, 3)])};
#pragma unroll
                        for (int db = 0; db < NDB; db++) {
                            const u32x2 vf = *(const u32x2 *)(Vt + fg_mfma_vt_smem(fg_mfma_att_v_tok(lane, b, 0),
                                                                                    fg_mfma_att_v_dim(lane, db)));
                            oacc[db] = mfma32x32x8<T>(vf, pf, oacc[db]);
                        }
                    }
                }
            }

            /* Epilogue: the two lanes of a row add their partial sums; each writes its 4-dim
             * groups of the row (fp16/bf16 output, or the fp32 partial state). */
            if (wave_active) {
                const float l = rsum + fg_shfl_xor(full, rsum, FG_MFMA_ROW_XOR);
                if (rqtok >= 0) {
                    const float inv = l > 0.f ? 1.f / l : 0.f;
                    const int heads = a.kv_head_count * a.group;
                    if (rslot < 0) {
                        uint16_t *o = (uint16_t *)a.o + (int64_t)rqtok * a.o_stride_token +
                                      (int64_t)rh * a.o_stride_head;
#pragma unroll
                        for (int db = 0; db < NDB; db++)
#pragma unroll
                            for (int g4 = 0; g4 < 4; g4++) {
                                const f32x16 &acc = oacc[db];
                                const u32x2 w = {fg_pack2<T>(acc[4 * g4] * inv, acc[4 * g4 + 1] * inv),
                                                 fg_pack2<T>(acc[4 * g4 + 2] * inv, acc[4 * g4 + 3] * inv)};
                                *(u32x2 *)(o + fg_mfma_att_o_dim(lane, db, 4 * g4)) = w;
                            }
                    } else {
                        float *po = a.partial_o + ((size_t)rslot * heads + rhl) * a.head_dim_v;
#pragma unroll
                        for (int db = 0; db < NDB; db++)
#pragma unroll
                            for (int g4 = 0; g4 < 4; g4++) {
                                const f32x16 &acc = oacc[db];
                                const f32x4 w = {acc[4 * g4] * inv, acc[4 * g4 + 1] * inv,
                                                 acc[4 * g4 + 2] * inv, acc[4 * g4 + 3] * inv};
                                *(f32x4 *)(po + fg_mfma_att_o_dim(lane, db, 4 * g4)) = w;
                            }
                    }
                    if (lane < FG_MFMA_ROW_XOR)
                        store_lse(a, rqtok, rh, rhl, rslot, l > 0.f ? rmax * kLn2 + logf(l) : -INFINITY);
                }
            }
        }
    }
#else
    (void)a;
#endif
}

template <int T> hipError_t launch_dims(const fg_kernel_args *a, hipStream_t s) {
    switch (a->head_dim_qk) {
    case 64: partial_mfma<T, 64><<<a->num_blocks, kThreads, 0, s>>>(*a); break;
    case 128: partial_mfma<T, 128><<<a->num_blocks, kThreads, 0, s>>>(*a); break;
    case 256: partial_mfma<T, 256><<<a->num_blocks, kThreads, 0, s>>>(*a); break;
    default: return hipErrorInvalidValue;
    }
    return hipGetLastError();
}

} /* namespace */

hipError_t fg_partial_mfma_launch(const fg_kernel_args *a, hipStream_t stream) {
    if (a->head_dim_v != a->head_dim_qk || a->kv_dtype != a->q_dtype) return hipErrorInvalidValue;
    if (a->num_blocks <= 0) return hipSuccess;
    switch (a->q_dtype) {
    case FG_T_F16: return launch_dims<FG_T_F16>(a, stream);
    case FG_T_BF16: return launch_dims<FG_T_BF16>(a, stream);
    default: return hipErrorInvalidValue;
    }
}

hipError_t fg_partial_mfma_occupancy(int head_dim, int *blocks_per_unit) {
    *blocks_per_unit = 0;
    switch (head_dim) {
    case 64: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mfma<FG_T_F16, 64>, kThreads, 0);
    case 128: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mfma<FG_T_F16, 128>, kThreads, 0);
    case 256: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mfma<FG_T_F16, 256>, kThreads, 0);
    default: return hipErrorInvalidValue;
    }
}

#endif /* FG_HIP */
