/*
 * Partial attention over the plan's work list, and the log-sum-exp merge.
 *
 * One persistent launch: block b runs tasks block_task[block_task_off[b] ..
 * block_task_off[b+1]) (src/worklist.h). A task is (item, KV head); its query rows
 * are (row of the item) x (query heads of the KV head), M = rows * group, taken in row
 * blocks. Every KV token the task's segments name is read from device memory once per
 * row block and applied to all rows of the block: that is where prefix sharing pays.
 *
 * Two implementations of the same contract:
 *  - matrix path (NVIDIA sm80+): 4 warps x 16 rows, S = Q K^T and O += P V with
 *    mma.sync m16n8k16 (fp32 accumulation), KV tiles gathered page by page with
 *    16-byte cp.async into a double-buffered, swizzled shared-memory tile. The item's
 *    segments are concatenated into one stream of KV positions, so short segments
 *    (folded nodes) share a tile instead of each padding one; the per-column segment
 *    rank range and position become the mask. Default kernel: partial_mma4 (v4), whose
 *    tile rows' page lookups are built one step ahead in a shared-memory table.
 *  - AMD CDNA (gfx908/gfx90a/gfx940): the MFMA kernel of hip/partial_mfma.hip.
 *  - portable path (other AMD targets, and any tensor whose strides defeat 16-byte loads):
 *    one wave per query row, lanes across head dims, wave-wide dot products through
 *    the shuffle wrapper.
 * Both: online softmax in base 2 with the scale folded in (exp2 is one instruction),
 * LSE reported in natural log; a row that sees no key gets O = 0 and LSE = -inf.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "compat.h"
#include "kernels.h"
#include "partial_mfma.h"
#include "wgmma_sm90.h"

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* Write one row's result: the final output (q dtype) when slot == -1, else the
 * partial state (fp32 O / l and LSE). Used by the portable path per lane. */
template <int T>
__device__ __forceinline__ void store_out(const fg_kernel_args &a, int qtok, int h, int hl,
                                          int slot, int d, float val) {
    if (slot < 0) {
        uint16_t *o = (uint16_t *)a.o;
        o[(int64_t)qtok * a.o_stride_token + (int64_t)h * a.o_stride_head + d] = fg_from_f32<T>(val);
    } else {
        int heads = a.kv_head_count * a.group;
        a.partial_o[((size_t)slot * heads + hl) * a.head_dim_v + d] = val;
    }
}
__device__ __forceinline__ void store_lse(const fg_kernel_args &a, int qtok, int h, int hl,
                                          int slot, float lse) {
    if (slot < 0) {
        if (a.lse) a.lse[(int64_t)qtok * a.lse_stride_token + (int64_t)h * a.lse_stride_head] = lse;
    } else {
        a.partial_lse[(size_t)slot * (a.kv_head_count * a.group) + hl] = lse;
    }
}

/* ------------------------------------------------------------------ portable */

constexpr int kPortableThreads = 256;

template <int T, int D>
__global__ void __launch_bounds__(kPortableThreads) partial_portable(fg_kernel_args a) {
    constexpr int DPL = (D + FG_WAVE_SIZE - 1) / FG_WAVE_SIZE;
    const int waves = kPortableThreads / FG_WAVE_SIZE;
    const int wave = threadIdx.x / FG_WAVE_SIZE, lane = threadIdx.x % FG_WAVE_SIZE;
    const uint16_t *q = (const uint16_t *)a.q;
    const uint16_t *k = (const uint16_t *)a.k;
    const uint16_t *v = (const uint16_t *)a.v;
    const float sl2 = a.scale * kLog2e;
    for (int bt = a.block_task_off[blockIdx.x]; bt < a.block_task_off[blockIdx.x + 1]; ++bt) {
        const int task = a.block_task[bt];
        const int item = task / a.kv_head_count, g = task % a.kv_head_count;
        const int kvh = a.kv_head_begin + g;
        const int row0 = a.item_row_off[item], nrows = a.item_row_off[item + 1] - row0;
        const int seg0 = a.item_seg_off[item], seg1 = a.item_seg_off[item + 1];
        const int M = nrows * a.group;
        for (int m = wave; m < M; m += waves) {
            const fg_row r = a.row[row0 + m / a.group];
            const int kk = m % a.group;
            const int h = kvh * a.group + kk, hl = g * a.group + kk;
            float qv[DPL], ov[DPL];
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                int d = lane + i * FG_WAVE_SIZE;
                qv[i] = d < D ? fg_to_f32<T>(q[(int64_t)r.qtok * a.q_stride_token +
                                               (int64_t)h * a.q_stride_head + d]) * sl2
                              : 0.f;
                ov[i] = 0.f;
            }
            float mx = -INFINITY, l = 0.f;
            for (int s = seg0; s < seg1; ++s) {
                const fg_work_seg sg = a.seg[s];
                if (r.rank < sg.rank_lo || r.rank >= sg.rank_hi) continue;
                const int end = min(sg.kv_end, r.limit);
                for (int p = sg.kv_begin; p < end; ++p) {
                    const int64_t pg = a.page[sg.page_base + p / a.page_size], slot = p % a.page_size;
                    const uint16_t *kp = k + pg * a.k_stride_page + slot * a.k_stride_token +
                                         (int64_t)kvh * a.k_stride_head;
                    const uint16_t *vp = v + pg * a.v_stride_page + slot * a.v_stride_token +
                                         (int64_t)kvh * a.v_stride_head;
                    float dot = 0.f;
#pragma unroll
                    for (int i = 0; i < DPL; i++) {
                        int d = lane + i * FG_WAVE_SIZE;
                        if (d < D) dot += qv[i] * fg_to_f32<T>(kp[d]);
                    }
                    dot = fg_wave_sum(dot);
                    const float mn = fmaxf(mx, dot);
                    const float alpha = exp2f(mx - mn), pw = exp2f(dot - mn);
                    l = l * alpha + pw;
#pragma unroll
                    for (int i = 0; i < DPL; i++) {
                        int d = lane + i * FG_WAVE_SIZE;
                        ov[i] = ov[i] * alpha + (d < D ? pw * fg_to_f32<T>(vp[d]) : 0.f);
                    }
                    mx = mn;
                }
            }
            const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                int d = lane + i * FG_WAVE_SIZE;
                if (d < D) store_out<T>(a, r.qtok, h, hl, r.slot, d, ov[i] * inv);
            }
            if (lane == 0)
                store_lse(a, r.qtok, h, hl, r.slot, l > 0.f ? mx * kLn2 + logf(l) : -INFINITY);
        }
    }
}

/* ------------------------------------------------------------------ merge */

constexpr int kMergeThreads = 256;

/* Slots are combined in the order the plan lists them, so the result is bitwise
 * reproducible run to run. One wave per (q token, head) pair; its lanes hold 4
 * consecutive head dims each (16-byte loads), and the slot loop has no dependence
 * between its loads, so a pair's partial rows are read with several loads in flight.
 * (v1 used one block per q token: W3's 64 tokens kept 64 blocks busy, latency-bound.) */
/* Partial-state loads of the merge. CG: through L2 only (ld.global.cg), for the merge
 * fused into the partial kernel, whose slots were written by other blocks of the same
 * grid (their writes are fenced before the arrival counter; L1 is not coherent). */
template <bool CG> __device__ __forceinline__ float merge_ld(const float *p) {
#if FG_CUDA
    if (CG) return __ldcg(p);
#endif
    return *p;
}
template <bool CG> __device__ __forceinline__ float4 merge_ld4(const float *p) {
#if FG_CUDA
    if (CG) return __ldcg((const float4 *)p);
#endif
    return *(const float4 *)p;
}

/* A pair's slot range and, when it fits a wave, lane j's slot index: plan data, which the
 * partial kernel never writes, so the separate merge reads it before its dependency wait. */
struct merge_slots {
    int b, e;
    int s_lane; /* merge_slot[b + lane] when lane < e - b <= wave size, else 0 */
};
__device__ __forceinline__ merge_slots merge_slots_of(const fg_kernel_args &a, int qt, int lane) {
    merge_slots m;
    m.b = a.merge_off[qt];
    m.e = a.merge_off[qt + 1];
    m.s_lane = m.e - m.b <= FG_WAVE_SIZE && lane < m.e - m.b ? a.merge_slot[m.b + lane] : 0;
    return m;
}

/* Lane j holds slot j's LSE l (-inf past the n slots): the pair's max and the weight sum
 * as wave reductions (a fixed shuffle tree: deterministic), and lane j's weight. */
__device__ __forceinline__ void merge_weights(float l, int n, int lane, float &mx, float &w_lane, float &sum) {
    const uint64_t full = fg_lane_full_mask(FG_WAVE_SIZE);
    mx = l;
#pragma unroll
    for (int off = FG_WAVE_SIZE / 2; off > 0; off >>= 1) mx = fmaxf(mx, fg_shfl_xor(full, mx, off));
    w_lane = mx != -INFINITY && lane < n ? expf(l - mx) : 0.f;
    sum = fg_wave_sum(w_lane);
}

/* Four consecutive head dims of a merged row, normalised, in the output dtype. */
template <int T>
__device__ __forceinline__ void merge_store4(uint16_t *o, float a0, float a1, float a2, float a3, float inv) {
    o[0] = fg_from_f32<T>(a0 * inv);
    o[1] = fg_from_f32<T>(a1 * inv);
    o[2] = fg_from_f32<T>(a2 * inv);
    o[3] = fg_from_f32<T>(a3 * inv);
}

/* O rows of partial slots one lane holds in registers at once in the merge's fast path
 * (8 float4: the kernel then needs ~106 registers, 2 blocks of 8 waves per SM, where the
 * other path needs 48). */
constexpr int kMergeBatch = 8;
/* The fast path pays for its registers with occupancy: it is launched only when one wave
 * per pair fits the device at once (2 x 8 waves on each of an H100's 132 SMs: 2112).
 * With it on every plan, W5 (8192 pairs of 2 slots) lost 4 us while W3 (2048 pairs of
 * 13 slots) gained 5 (session 8). */
constexpr int64_t kMergeFastPairs = 2048;
/* The other path batches too, when a pair has at most this many slots (W5: 2): its O
 * loads then leave with the LSEs, one memory round trip instead of two (64 registers
 * instead of 48, none spilled; 4 rather than 5 blocks of 8 waves per SM). */
constexpr int kMergeSmall = 3;

/* Merge q token qt's slots for local head hl (one wave; lane = its lane), in the order the
 * plan lists them: the same arithmetic wherever it runs, so the fused and the separate
 * merge give bitwise the same result.
 * When a pair has at most a wave's worth of slots (W1-W5: 2 to 13), lane j loads slot j's
 * LSE, and the max and the weight sum are wave reductions (a fixed shuffle tree:
 * deterministic); with one 4-dim chunk per lane, the first B O rows (kMergeBatch in the
 * FAST kernel, kMergeSmall elsewhere: pairs of at most that many slots) are loaded
 * together with the LSEs, so a pair of up to B slots costs one memory round trip
 * after its slot indices (which the separate merge reads before its dependency wait). The
 * first version walked the slots serially, twice, one L2 round trip per slot; the step
 * then spent 7-11 us between the partial grid's end and its own end (session 8). More
 * slots than lanes take the serial walk. */
template <int T, bool CG, bool FAST>
__device__ __forceinline__ void merge_pair(const fg_kernel_args &a, int qt, int hl, int lane, const merge_slots &m) {
    const int heads = a.kv_head_count * a.group;
    const int dv = a.head_dim_v;
    const int b = m.b, e = m.e;
    if (b == e) return;
    const int h = a.kv_head_begin * a.group + hl;
    const uint64_t full = fg_lane_full_mask(FG_WAVE_SIZE);
    const int n = e - b;
    const size_t s_lane = (size_t)m.s_lane;
    uint16_t *o = (uint16_t *)a.o + (int64_t)qt * a.o_stride_token + (int64_t)h * a.o_stride_head;
    float mx = -INFINITY, sum = 0.f, w_lane = 0.f;
    constexpr int B = FAST ? kMergeBatch : kMergeSmall; /* O rows in registers at once */
    if ((FAST || n <= B) && n <= FG_WAVE_SIZE && dv <= FG_WAVE_SIZE * 4) {
        const int d = lane * 4;
        const bool has_d = d < dv;
        const float l = lane < n ? merge_ld<CG>(a.partial_lse + s_lane * heads + hl) : -INFINITY;
        float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f, inv = 0.f;
        for (int j0 = 0; j0 < n; j0 += B) { /* uniform over the wave */
            float4 p[B];
#pragma unroll
            for (int j = 0; j < B; ++j) {
                const int src = (j0 + j) & (FG_WAVE_SIZE - 1);
                const size_t s = (size_t)__float_as_int(fg_shfl_idx(full, __int_as_float((int)s_lane), src));
                if (j0 + j < n && has_d) p[j] = merge_ld4<CG>(a.partial_o + (s * heads + hl) * dv + d);
            }
            if (j0 == 0) { /* the first batch's loads are in flight with the LSEs */
                merge_weights(l, n, lane, mx, w_lane, sum);
                inv = sum > 0.f ? 1.f / sum : 0.f;
            }
#pragma unroll
            for (int j = 0; j < B; ++j) {
                const float w = fg_shfl_idx(full, w_lane, (j0 + j) & (FG_WAVE_SIZE - 1));
                if (j0 + j < n && has_d && sum > 0.f) {
                    acc0 += w * p[j].x;
                    acc1 += w * p[j].y;
                    acc2 += w * p[j].z;
                    acc3 += w * p[j].w;
                }
            }
        }
        if (has_d) merge_store4<T>(o + d, acc0, acc1, acc2, acc3, inv);
    } else {
        if (n <= FG_WAVE_SIZE) {
            merge_weights(lane < n ? merge_ld<CG>(a.partial_lse + s_lane * heads + hl) : -INFINITY, n, lane, mx,
                          w_lane, sum);
        } else {
            for (int i = b; i < e; ++i) mx = fmaxf(mx, merge_ld<CG>(a.partial_lse + (size_t)a.merge_slot[i] * heads + hl));
            if (mx != -INFINITY)
                for (int i = b; i < e; ++i) sum += expf(merge_ld<CG>(a.partial_lse + (size_t)a.merge_slot[i] * heads + hl) - mx);
        }
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        /* d0 is uniform over the wave: every lane reaches the shuffles, also when dv leaves
         * some lanes without head dims. */
        for (int d0 = 0; d0 < dv; d0 += FG_WAVE_SIZE * 4) {
            const int d = d0 + lane * 4;
            const bool has_d = d < dv;
            float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f;
            if (sum > 0.f && n <= FG_WAVE_SIZE) {
                /* slot j's index and weight from lane j: the O loads have no dependence */
#pragma unroll 8
                for (int j = 0; j < n; ++j) {
                    const size_t s = (size_t)__float_as_int(fg_shfl_idx(full, __int_as_float((int)s_lane), j));
                    const float w = fg_shfl_idx(full, w_lane, j);
                    if (!has_d) continue;
                    const float4 p = merge_ld4<CG>(a.partial_o + (s * heads + hl) * dv + d);
                    acc0 += w * p.x;
                    acc1 += w * p.y;
                    acc2 += w * p.z;
                    acc3 += w * p.w;
                }
            } else if (sum > 0.f && has_d) {
#pragma unroll 4
                for (int i = b; i < e; ++i) {
                    const size_t s = (size_t)a.merge_slot[i];
                    const float w = expf(merge_ld<CG>(a.partial_lse + s * heads + hl) - mx);
                    const float4 p = merge_ld4<CG>(a.partial_o + (s * heads + hl) * dv + d);
                    acc0 += w * p.x;
                    acc1 += w * p.y;
                    acc2 += w * p.z;
                    acc3 += w * p.w;
                }
            }
            if (has_d) merge_store4<T>(o + d, acc0, acc1, acc2, acc3, inv);
        }
    }
    if (lane == 0 && a.lse)
        a.lse[(int64_t)qt * a.lse_stride_token + (int64_t)h * a.lse_stride_head] =
            sum > 0.f ? mx + logf(sum) : -INFINITY;
}

template <int T, bool FAST>
__global__ void __launch_bounds__(kMergeThreads) merge_states(fg_kernel_args a) {
    const int waves = kMergeThreads / FG_WAVE_SIZE;
    const int lane = threadIdx.x % FG_WAVE_SIZE;
    const int heads = a.kv_head_count * a.group;
    const int64_t pairs = (int64_t)a.num_qtok * heads;
    int64_t pr = (int64_t)blockIdx.x * waves + threadIdx.x / FG_WAVE_SIZE;
    merge_slots m = {0, 0, 0};
    if (pr < pairs) m = merge_slots_of(a, (int)(pr / heads), lane); /* before the wait: plan data */
#if FG_CUDA && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* Launched as a programmatic dependent of the partial kernel (sm_90, fg_kernels_launch):
     * wait until that grid has completed and its writes are visible. No-op otherwise. */
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
    for (bool first = true; pr < pairs; pr += (int64_t)gridDim.x * waves, first = false) {
        const int qt = (int)(pr / heads);
        if (!first) m = merge_slots_of(a, qt, lane);
        merge_pair<T, false, FAST>(a, qt, (int)(pr % heads), lane, m);
    }
}

/* ------------------------------------------------------------------ matrix path */

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = 32 * kMmaWarps; /* mma.sync is a warp-of-32 instruction */
constexpr int kBM = 16 * kMmaWarps;         /* one m16 tile per warp */
constexpr int kSegCap = 64;                 /* segments staged in shared memory at once */

/* 64-token KV tiles keep two stages of K and V at 64 KiB for head_dim 128 (two blocks
 * per SM on sm80/sm90); head_dim 256 halves the tile to stay within the same budget
 * and within 255 registers (its O accumulator alone is 128 per thread). */
template <int D> struct MmaCfg {
    static constexpr int BN = D <= 128 ? 64 : 32;
    static constexpr int CPR = D * 2 / 16;           /* 16-byte chunks per K/V/Q row */
    static constexpr int RPP = kMmaThreads / CPR;    /* rows one loader pass covers */
    static constexpr size_t q_bytes = (size_t)kBM * D * 2;
    static constexpr size_t kv_bytes = (size_t)2 * BN * D * 2; /* two stages */
    static constexpr size_t meta_bytes = (size_t)3 * 2 * BN * 4;
    static constexpr size_t seg_bytes = (size_t)(5 * kSegCap + 1) * 4;
    static constexpr size_t smem = q_bytes + 2 * kv_bytes + meta_bytes + seg_bytes;
    /* v4: meta + K/V row addresses in 3 slots, segment table with page bases */
    static constexpr size_t smem4 = q_bytes + 2 * kv_bytes + (size_t)3 * 3 * BN * 4 + (size_t)3 * BN * 16 + seg_bytes;
};

#if FG_CUDA
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    unsigned s = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const void *p) {
    unsigned s = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}
template <int T>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    if (T == FG_T_F16)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
            "{%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
            "{%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int T, int D>
__global__ void __launch_bounds__(kMmaThreads) partial_mma(fg_kernel_args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using C = MmaCfg<D>;
    constexpr int BN = C::BN, CPR = C::CPR, RPP = C::RPP;
    extern __shared__ __align__(16) unsigned char smem[];
    uint16_t *Qs = (uint16_t *)smem;
    uint16_t *Ks = (uint16_t *)(smem + C::q_bytes);
    uint16_t *Vs = (uint16_t *)(smem + C::q_bytes + C::kv_bytes);
    int *meta_pos = (int *)(smem + C::q_bytes + 2 * C::kv_bytes);
    int *meta_lo = meta_pos + 2 * BN;
    int *meta_hi = meta_lo + 2 * BN;
    int *seg_cum = meta_hi + 2 * BN;
    int *seg_pb = seg_cum + kSegCap + 1; /* page_base: the segment's run in the page list */
    int *seg_beg = seg_pb + kSegCap;
    int *seg_lo = seg_beg + kSegCap;
    int *seg_hi = seg_lo + kSegCap;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const uint16_t *q = (const uint16_t *)a.q;
    const uint16_t *k = (const uint16_t *)a.k;
    const uint16_t *v = (const uint16_t *)a.v;
    const float sl2 = a.scale * kLog2e;
    const int lchunk = tid % CPR, lrow0 = tid / CPR;

    for (int bt = a.block_task_off[blockIdx.x]; bt < a.block_task_off[blockIdx.x + 1]; ++bt) {
        const int task = a.block_task[bt];
        const int item = task / a.kv_head_count, g = task % a.kv_head_count;
        const int kvh = a.kv_head_begin + g;
        const int row0 = a.item_row_off[item], nrows = a.item_row_off[item + 1] - row0;
        const int seg0 = a.item_seg_off[item], nseg = a.item_seg_off[item + 1] - seg0;
        const int M = nrows * a.group;
        const int64_t k_head = (int64_t)kvh * a.k_stride_head, v_head = (int64_t)kvh * a.v_stride_head;

        for (int mb = 0; mb < M; mb += kBM) {
            __syncthreads(); /* the previous row block's readers of Qs are done */
            for (int i = tid; i < kBM * CPR; i += kMmaThreads) {
                const int r = i / CPR, c = i % CPR, m = mb + r;
                fg_vec16 val = make_uint4(0u, 0u, 0u, 0u);
                if (m < M) {
                    const int qtok = a.row[row0 + m / a.group].qtok;
                    const int h = kvh * a.group + m % a.group;
                    val = *(const fg_vec16 *)(q + (int64_t)qtok * a.q_stride_token +
                                              (int64_t)h * a.q_stride_head + c * 8);
                }
                *(fg_vec16 *)(Qs + r * D + fg_swizzle_chunk(r, c) * 8) = val;
            }
            /* This thread's two accumulator rows (lane/4 and lane/4 + 8 of its warp). */
            int rrank[2], rlim[2], rslot[2], rqtok[2], rh[2], rhl[2];
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int m = mb + warp * 16 + (lane >> 2) + 8 * hf;
                if (m < M) {
                    const fg_row r = a.row[row0 + m / a.group];
                    rrank[hf] = r.rank;
                    rlim[hf] = r.limit;
                    rslot[hf] = r.slot;
                    rqtok[hf] = r.qtok;
                    rh[hf] = kvh * a.group + m % a.group;
                    rhl[hf] = g * a.group + m % a.group;
                } else {
                    rrank[hf] = INT_MIN; /* outside every segment's rank range */
                    rlim[hf] = 0;
                    rslot[hf] = rqtok[hf] = rh[hf] = rhl[hf] = -1;
                }
            }
            const bool warp_active = mb + warp * 16 < M;
            float oacc[D / 8][4];
#pragma unroll
            for (int i = 0; i < D / 8; i++) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
            float rmax[2] = {-INFINITY, -INFINITY}, rsum[2] = {0.f, 0.f};

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
                const int ntiles = (L + BN - 1) / BN;

                /* Gather one tile of the concatenated segment stream into stage st. Each
                 * thread copies one 16-byte chunk of several token rows; a row's chunks are
                 * consecutive threads, so each token's K (and V) row is one coalesced run. */
                auto load_tile = [&](int t, int st) {
                    uint16_t *kd = Ks + st * BN * D, *vd = Vs + st * BN * D;
#pragma unroll
                    for (int r = lrow0; r < BN; r += RPP) {
                        const int idx = t * BN + r;
                        const uint16_t *kp = k, *vp = v;
                        int bytes = 0;
                        if (idx < L) {
                            int lo = 0, hi = ns;
                            while (hi - lo > 1) {
                                const int mid = (lo + hi) >> 1;
                                if (seg_cum[mid] <= idx) lo = mid; else hi = mid;
                            }
                            const int p = seg_beg[lo] + idx - seg_cum[lo];
                            const int64_t pg = a.page[seg_pb[lo] + p / a.page_size];
                            const int64_t slot = p % a.page_size;
                            kp = k + pg * a.k_stride_page + slot * a.k_stride_token + k_head + lchunk * 8;
                            vp = v + pg * a.v_stride_page + slot * a.v_stride_token + v_head + lchunk * 8;
                            bytes = 16;
                            if (lchunk == 0) {
                                meta_pos[st * BN + r] = p;
                                meta_lo[st * BN + r] = seg_lo[lo];
                                meta_hi[st * BN + r] = seg_hi[lo];
                            }
                        } else if (lchunk == 0) {
                            meta_pos[st * BN + r] = INT_MAX;
                            meta_lo[st * BN + r] = INT_MAX;
                            meta_hi[st * BN + r] = INT_MIN;
                        }
                        const int off = r * D + fg_swizzle_chunk(r, lchunk) * 8;
                        fg_cp_async16(kd + off, kp, bytes);
                        fg_cp_async16(vd + off, vp, bytes);
                    }
                    fg_cp_async_commit();
                };

                if (ntiles > 0) load_tile(0, 0);
                for (int t = 0; t < ntiles; ++t) {
                    const int st = t & 1;
                    fg_cp_async_wait<0>();
                    __syncthreads(); /* tile t visible to all; stage st^1 no longer read */
                    if (t + 1 < ntiles) load_tile(t + 1, st ^ 1);
                    if (!warp_active) continue;

                    const uint16_t *kt = Ks + st * BN * D, *vt = Vs + st * BN * D;
                    float sacc[BN / 8][4];
#pragma unroll
                    for (int i = 0; i < BN / 8; i++) sacc[i][0] = sacc[i][1] = sacc[i][2] = sacc[i][3] = 0.f;
#pragma unroll
                    for (int ks = 0; ks < D / 16; ks++) {
                        uint32_t af[4];
                        const int qr = warp * 16 + fg_ldm_a_row(lane);
                        ldsm_x4(af, Qs + qr * D + fg_swizzle_chunk(qr, 2 * ks + fg_ldm_a_chunk(lane)) * 8);
#pragma unroll
                        for (int np = 0; np < BN / 16; np++) {
                            uint32_t bf[4];
                            const int kr = np * 16 + fg_ldm_bk_row(lane);
                            ldsm_x4(bf, kt + kr * D + fg_swizzle_chunk(kr, 2 * ks + fg_ldm_bk_chunk(lane)) * 8);
                            mma16816<T>(sacc[2 * np], af, bf[0], bf[1]);
                            mma16816<T>(sacc[2 * np + 1], af, bf[2], bf[3]);
                        }
                    }
                    /* Mask (segment rank range, causal limit, past the stream's end) and
                     * the online-softmax update, per accumulator row. */
                    float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
                    for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            const int col = nt * 8 + fg_mma_c_col(lane, i), hf = i >> 1;
                            const int pos = meta_pos[st * BN + col];
                            const bool vis = meta_lo[st * BN + col] <= rrank[hf] &&
                                             rrank[hf] < meta_hi[st * BN + col] && pos < rlim[hf];
                            const float s = vis ? sacc[nt][i] * sl2 : -INFINITY;
                            sacc[nt][i] = s;
                            tmax[hf] = fmaxf(tmax[hf], s);
                        }
                    float alpha[2], base[2];
#pragma unroll
                    for (int hf = 0; hf < 2; hf++) {
                        const uint64_t full = fg_lane_full_mask(32);
                        tmax[hf] = fmaxf(tmax[hf], fg_shfl_xor(full, tmax[hf], 1));
                        tmax[hf] = fmaxf(tmax[hf], fg_shfl_xor(full, tmax[hf], 2));
                        const float mn = fmaxf(rmax[hf], tmax[hf]);
                        base[hf] = mn == -INFINITY ? 0.f : mn; /* no key yet: avoid -inf - -inf */
                        alpha[hf] = exp2f(rmax[hf] - base[hf]);
                        rmax[hf] = mn;
                        rsum[hf] *= alpha[hf];
                    }
#pragma unroll
                    for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            const float p = exp2f(sacc[nt][i] - base[i >> 1]);
                            sacc[nt][i] = p;
                            rsum[i >> 1] += p;
                        }
#pragma unroll
                    for (int dt = 0; dt < D / 8; dt++) {
                        oacc[dt][0] *= alpha[0];
                        oacc[dt][1] *= alpha[0];
                        oacc[dt][2] *= alpha[1];
                        oacc[dt][3] *= alpha[1];
                    }
                    /* The S accumulator layout of two n8 tiles is the A fragment of one k16 step. */
#pragma unroll
                    for (int kk = 0; kk < BN / 16; kk++) {
                        uint32_t pf[4];
                        pf[0] = fg_pack2<T>(sacc[2 * kk][0], sacc[2 * kk][1]);
                        pf[1] = fg_pack2<T>(sacc[2 * kk][2], sacc[2 * kk][3]);
                        pf[2] = fg_pack2<T>(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]);
                        pf[3] = fg_pack2<T>(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3]);
#pragma unroll
                        for (int dp = 0; dp < D / 16; dp++) {
                            uint32_t bf[4];
                            const int vr = kk * 16 + fg_ldm_bv_row(lane);
                            ldsm_x4_trans(bf, vt + vr * D + fg_swizzle_chunk(vr, 2 * dp + fg_ldm_bv_chunk(lane)) * 8);
                            mma16816<T>(oacc[2 * dp], pf, bf[0], bf[1]);
                            mma16816<T>(oacc[2 * dp + 1], pf, bf[2], bf[3]);
                        }
                    }
                }
            }

            /* Epilogue: the quad of lanes sharing a row sums its partial softmax sums. */
            if (warp_active) {
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const uint64_t full = fg_lane_full_mask(32);
                    float l = rsum[hf];
                    l += fg_shfl_xor(full, l, 1);
                    l += fg_shfl_xor(full, l, 2);
                    if (rqtok[hf] < 0) continue; /* padding row past M */
                    const float inv = l > 0.f ? 1.f / l : 0.f;
                    const int heads = a.kv_head_count * a.group;
                    if (rslot[hf] < 0) {
                        uint16_t *o = (uint16_t *)a.o + (int64_t)rqtok[hf] * a.o_stride_token +
                                      (int64_t)rh[hf] * a.o_stride_head;
#pragma unroll
                        for (int dt = 0; dt < D / 8; dt++) {
                            const int d = dt * 8 + fg_mma_c_col(lane, 0);
                            *(uint32_t *)(o + d) =
                                (uint32_t)fg_from_f32<T>(oacc[dt][2 * hf] * inv) |
                                ((uint32_t)fg_from_f32<T>(oacc[dt][2 * hf + 1] * inv) << 16);
                        }
                    } else {
                        float *po = a.partial_o + ((size_t)rslot[hf] * heads + rhl[hf]) * a.head_dim_v;
#pragma unroll
                        for (int dt = 0; dt < D / 8; dt++) {
                            const int d = dt * 8 + fg_mma_c_col(lane, 0);
                            *(float2 *)(po + d) = make_float2(oacc[dt][2 * hf] * inv, oacc[dt][2 * hf + 1] * inv);
                        }
                    }
                    if ((lane & 3) == 0)
                        store_lse(a, rqtok[hf], rh[hf], rhl[hf], rslot[hf],
                                  l > 0.f ? rmax[hf] * kLn2 + logf(l) : -INFINITY);
                }
            }
        }
    }
#else
    (void)a;
#endif
}
/* ------------------------------------------------------------------ matrix path, v4
 *
 * partial_mma's tiles, double buffer and math, with the gather taken off the critical
 * path. The profile of v1 (perf/NOTES-gpu.md, session 3: Nsight Compute on W4/W5) showed
 * ~60% of the warps' stall samples in load_tile: every thread resolved the page of each of
 * its 8 token rows itself (16 threads per row did the same work), one row after another
 * (the row loop had a run-time start, so it was not unrolled), each row paying a binary
 * search, an integer division by the page size and dependent global loads (then:
 * page_off[src], then page[...]) before its cp.async could issue. v4:
 *  - a per-tile row table (K and V addresses, position, segment rank range) in shared
 *    memory, 3 slots (tiles t, t+1, t+2); one "filler" thread per tile row builds tile
 *    t+2's entry during step t, its page-index load issued before the tile's compute and
 *    the row's addresses computed and stored after it;
 *  - the segment table stages each segment's page_base (src/worklist.h), so a row needs
 *    one global load; page sizes that are powers of two use shifts;
 *  - the issue of tile t+1 is a compile-time-unrolled loop of one 16-byte shared load and
 *    two cp.async per row: no global load, no division, no 64-bit address math (session 11:
 *    the loop is issue-bound, and the 16 loaders of a row each resolving its address was
 *    ~45 instructions a row);
 *  - tiles whose every key every row sees skip the per-key mask (session 11).
 * Fillers are the last BN threads (warps 2-3 at BN 64): idle warps when a row block has
 * <= 32 rows (decode with GQA), the common case. */
#if FG_CUDA && defined(FG_KERNEL_TIMING)
/* Debug build only (-DFG_KERNEL_TIMING): per-block globaltimer/clock64 at block start and
 * end, clock64 at each task's start and end (indexed by the block_task position); read
 * back and summarised by fgt_dump in fg_kernels_launch. Never in the default build. */
constexpr int kFgtMaxBlocks = 8192, kFgtMaxTasks = 1 << 20;
__device__ unsigned long long g_fgt_block[4 * kFgtMaxBlocks]; /* gt0, gt1, clk0, clk1 */
__device__ unsigned long long g_fgt_task[2 * kFgtMaxTasks];   /* clk0, clk1 */
__device__ __forceinline__ unsigned long long fgt_gtimer() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#endif
template <int N> struct FgIc { static constexpr int value = N; };

/* v8 (SP = true): a row block of <= 32 rows (<= 16 with 64-token tiles) splits each tile's
 * columns over the warps that would idle: nrw warps own 16 rows each, 4 / nrw column
 * groups of BN * nrw / 4 tokens each; every warp keeps its own online-softmax state over
 * its column group, and the states are combined through shared memory (the K/V stages,
 * free by then) before the epilogue. Fixed combine order: bitwise reproducible. */
/* v9 (WG = true, sm_90a builds only): the same tiles, tables and softmax, with both
 * products on the warpgroup MMA (wgmma.mma_async: the block's 4 warps are one warpgroup,
 * M = 64). B comes straight from shared memory through a descriptor, so the K and V
 * tiles are not re-read into registers by every warp (ldmatrix, 4x per tile) and the
 * tensor cores run asynchronously to the issuing warps. The K/V stages use wgmma's
 * 128-byte-swizzle layout: per 64-column half of the head dim, 128-byte rows in 8-row
 * groups of 1024 bytes; K is read K-major (S = Q K^T), V MN-major (O += P V, the
 * transposed-B mode). A (Q, then P) stays in registers in mma.sync's A-fragment layout,
 * which is wgmma's; the accumulators have mma.sync's C layout, so the mask and the
 * online softmax are v4's code. Every warp takes part even past M (padding rows see
 * no key). */
template <int D> __device__ __forceinline__ int wg_tile_off(int r, int c) {
    return (c >> 3) * (MmaCfg<D>::BN * 64) + r * 64 + ((c & 7) ^ (r & 7)) * 8;
}
/* Element offset of 16-byte chunk c of K/V tile row r: v4's swizzled rows, or v9's layout. */
template <int D, bool WG> __device__ __forceinline__ int kv_off(int r, int c) {
    return WG ? wg_tile_off<D>(r, c) : r * D + fg_swizzle_chunk(r, c) * 8;
}

template <int T, int D, bool V5, bool PF = false, bool SP = false, bool FU = false, bool WG = false>
__global__ void __launch_bounds__(kMmaThreads) partial_mma4(fg_kernel_args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using C = MmaCfg<D>;
    constexpr int BN = C::BN, CPR = C::CPR, RPP = C::RPP;
    static_assert(2 * BN <= kMmaThreads && BN % RPP == 0, "v4 table fill needs 2 x BN <= threads");
    static_assert(!WG || (D <= 128 && BN == 64 && !SP && !FU), "v9: head_dim <= 128, full tiles");
#if !defined(FG_HAVE_WGMMA)
    if constexpr (WG) return; /* never launched: fg_kernels_init probes for sm_90a code */
#endif
    extern __shared__ __align__(16) unsigned char smem_raw[];
    /* v9: the swizzled tiles need 1024-byte alignment; the launch adds 1 KiB for it. */
    unsigned char *smem = smem_raw;
    if (WG) smem += (1024u - ((unsigned)__cvta_generic_to_shared(smem_raw) & 1023u)) & 1023u;
    uint16_t *Qs = (uint16_t *)smem;
    uint16_t *Ks = (uint16_t *)(smem + C::q_bytes);
    uint16_t *Vs = (uint16_t *)(smem + C::q_bytes + C::kv_bytes);
    int *meta_pos = (int *)(smem + C::q_bytes + 2 * C::kv_bytes); /* [3][BN] */
    int *meta_lo = meta_pos + 3 * BN;
    int *meta_hi = meta_lo + 3 * BN;
    /* Addresses of the row's K and V (page, slot in the page and KV head resolved by the
     * filler), 0: past the stream's end. The loaders only add their chunk: an 8-row tile
     * issue was ~45 integer instructions per row and thread when every thread resolved
     * its rows' 64-bit addresses from the page id itself (Nsight Compute, W5: 45% of the
     * loop's instructions integer, session 11). */
    unsigned long long *tab_ad = (unsigned long long *)(meta_hi + 3 * BN); /* [3][BN][2] */
    int *seg_cum = (int *)(tab_ad + 3 * BN * 2);
    int *seg_pb = seg_cum + kSegCap + 1; /* page_base: the segment's run in the page list */
    int *seg_beg = seg_pb + kSegCap;
    int *seg_lo = seg_beg + kSegCap;
    int *seg_hi = seg_lo + kSegCap;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const uint16_t *q = (const uint16_t *)a.q;
    const uint16_t *k = (const uint16_t *)a.k;
    const uint16_t *v = (const uint16_t *)a.v;
    const float sl2 = a.scale * kLog2e;
    const int lchunk = tid % CPR, lrow0 = tid / CPR;
    const int ps = a.page_size;
    const int ps_shift = (ps & (ps - 1)) == 0 ? __ffs(ps) - 1 : -1; /* uniform */
    const int fill_r = tid - (kMmaThreads - BN);                     /* filler's tile row */

    /* v7 (PF): the next task's metadata chain (block_task -> item offsets -> segments)
     * is loaded during the current task, one dependent level at a time
     * at points where the current task waits anyway; the next task then stages its
     * segment table from registers. */
    const int bt_end = a.block_task_off[blockIdx.x + 1];
#if __CUDA_ARCH__ >= 900
    /* Let the merge grid (a programmatic dependent, sm_90) be scheduled as SMs free up; its
     * griddepcontrol.wait still waits for this whole grid's completion and writes. */
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
#if FG_CUDA && defined(FG_KERNEL_TIMING)
    if (tid == 0 && blockIdx.x < kFgtMaxBlocks) {
        g_fgt_block[4 * blockIdx.x] = fgt_gtimer();
        g_fgt_block[4 * blockIdx.x + 2] = clock64();
    }
#endif
    int nx_task = -1, nx_row0 = 0, nx_nrows = 0, nx_seg0 = 0, nx_nseg = 0;
    int nx_beg = 0, nx_len = 0, nx_lo = 0, nx_hi = 0, nx_pb = 0;
    bool nx_segs = false; /* this thread's segment registers hold the next task's */
    bool nx_meta = true;  /* nx_row0 .. nx_nseg hold the next task's item offsets */
    if (PF && a.block_task_off[blockIdx.x] < bt_end) {
        nx_task = a.block_task[a.block_task_off[blockIdx.x]];
        const int it = nx_task / a.kv_head_count;
        nx_row0 = a.item_row_off[it];
        nx_nrows = a.item_row_off[it + 1] - nx_row0;
        nx_seg0 = a.item_seg_off[it];
        nx_nseg = a.item_seg_off[it + 1] - nx_seg0;
    }
    for (int bt = a.block_task_off[blockIdx.x]; bt < bt_end; ++bt) {
#if FG_CUDA && defined(FG_KERNEL_TIMING)
        if (tid == 0 && bt < kFgtMaxTasks) g_fgt_task[2 * bt] = clock64();
#endif
        const int task = PF ? nx_task : a.block_task[bt];
        const int item = task / a.kv_head_count, g = task % a.kv_head_count;
        const int kvh = a.kv_head_begin + g;
        const bool pm = PF && nx_meta; /* else (the last task had no rows) load them now */
        const int row0 = pm ? nx_row0 : a.item_row_off[item];
        const int nrows = pm ? nx_nrows : a.item_row_off[item + 1] - row0;
        const int seg0 = pm ? nx_seg0 : a.item_seg_off[item];
        const int nseg = pm ? nx_nseg : a.item_seg_off[item + 1] - seg0;
        const bool cur_segs = PF && nx_segs && nseg <= kSegCap;
        const int c_beg = nx_beg, c_len = nx_len, c_lo = nx_lo, c_hi = nx_hi, c_pb = nx_pb;
        if (PF) { /* level 1 of the next task: its id */
            nx_segs = false;
            nx_meta = false;
            nx_task = bt + 1 < bt_end ? a.block_task[bt + 1] : -1;
        }
        const int M = nrows * a.group;
        const int64_t k_head = (int64_t)kvh * a.k_stride_head, v_head = (int64_t)kvh * a.v_stride_head;

        for (int mb = 0; mb < M; mb += kBM) {
            __syncthreads(); /* the previous row block's readers of Qs are done */
            if (V5) {
                /* v5: Q rows by cp.async (every row's index load in flight at once); they
                 * join tile 0's commit group and are waited for with it. */
                static_assert((kBM * CPR) % kMmaThreads == 0, "Q copy loop");
                int qt[kBM * CPR / kMmaThreads];
#pragma unroll
                for (int j = 0; j < kBM * CPR / kMmaThreads; j++) {
                    const int m = mb + (tid + j * kMmaThreads) / CPR;
                    qt[j] = m < M ? a.row[row0 + m / a.group].qtok : -1;
                }
#pragma unroll
                for (int j = 0; j < kBM * CPR / kMmaThreads; j++) {
                    const int i = tid + j * kMmaThreads, r = i / CPR, c = i % CPR, m = mb + r;
                    const uint16_t *src = q;
                    int bytes = 0;
                    if (qt[j] >= 0) {
                        src = q + (int64_t)qt[j] * a.q_stride_token +
                              (int64_t)(kvh * a.group + m % a.group) * a.q_stride_head + c * 8;
                        bytes = 16;
                    }
                    fg_cp_async16(Qs + r * D + fg_swizzle_chunk(r, c) * 8, src, bytes);
                }
                fg_cp_async_commit();
            } else {
            for (int i = tid; i < kBM * CPR; i += kMmaThreads) {
                const int r = i / CPR, c = i % CPR, m = mb + r;
                fg_vec16 val = make_uint4(0u, 0u, 0u, 0u);
                if (m < M) {
                    const int qtok = a.row[row0 + m / a.group].qtok;
                    const int h = kvh * a.group + m % a.group;
                    val = *(const fg_vec16 *)(q + (int64_t)qtok * a.q_stride_token +
                                              (int64_t)h * a.q_stride_head + c * 8);
                }
                *(fg_vec16 *)(Qs + r * D + fg_swizzle_chunk(r, c) * 8) = val;
            }
            }
            if (PF && mb == 0 && nx_task >= 0) { /* level 2: the next item's offsets */
                const int it = nx_task / a.kv_head_count;
                nx_row0 = a.item_row_off[it];
                nx_nrows = a.item_row_off[it + 1] - nx_row0;
                nx_seg0 = a.item_seg_off[it];
                nx_nseg = a.item_seg_off[it + 1] - nx_seg0;
                nx_meta = true;
            }
            /* v8: nrw row warps x (4 / nrw) column groups (uniform over the block) */
            const int nrw = !SP ? 4 : (M - mb <= 16 && BN >= 64) ? 1 : (M - mb <= 32 && BN >= 32) ? 2 : 4;
            const int rw = warp % nrw, ch = warp / nrw;
            int rrank[2], rlim[2], rslot[2], rqtok[2], rh[2], rhl[2];
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int m = mb + rw * 16 + (lane >> 2) + 8 * hf;
                if (m < M) {
                    const fg_row r = a.row[row0 + m / a.group];
                    rrank[hf] = r.rank;
                    rlim[hf] = r.limit;
                    rslot[hf] = r.slot;
                    rqtok[hf] = r.qtok;
                    rh[hf] = kvh * a.group + m % a.group;
                    rhl[hf] = g * a.group + m % a.group;
                } else {
                    rrank[hf] = INT_MIN;
                    rlim[hf] = 0;
                    rslot[hf] = rqtok[hf] = rh[hf] = rhl[hf] = -1;
                }
            }
            const bool warp_active = mb + rw * 16 < M;
            /* v9: every row block on the warpgroup MMA. Choosing mma.sync for row blocks
             * of <= 32 rows in the same kernel (both paths compiled in) spilled 144 bytes
             * and was 36% slower on W4 (perf/NOTES-gpu.md, session 8). */
            const bool wg_rb = WG;
            float oacc[D / 8][4];
#pragma unroll
            for (int i = 0; i < D / 8; i++) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
            float rmax[2] = {-INFINITY, -INFINITY}, rsum[2] = {0.f, 0.f};

            for (int sc = 0; sc < nseg; sc += kSegCap) {
                const int ns = min(kSegCap, nseg - sc);
                /* v5: an item of one chunk keeps its segment table across row blocks */
                const bool restage = !V5 || mb == 0 || nseg > kSegCap;
                __syncthreads(); /* the previous chunk's tiles, tables and segment table are consumed */
                if (restage && tid < ns) {
                    if (cur_segs && mb == 0) { /* v7: prefetched during the previous task */
                        seg_pb[tid] = c_pb;
                        seg_beg[tid] = c_beg;
                        seg_lo[tid] = c_lo;
                        seg_hi[tid] = c_hi;
                        seg_cum[tid + 1] = c_len;
                    } else {
                    const fg_work_seg sg = a.seg[seg0 + sc + tid];
                    seg_pb[tid] = sg.page_base;
                    seg_beg[tid] = sg.kv_begin;
                    seg_lo[tid] = sg.rank_lo;
                    seg_hi[tid] = sg.rank_hi;
                    seg_cum[tid + 1] = sg.kv_end - sg.kv_begin;
                    }
                }
                if (PF && mb == 0 && sc == 0 && nx_task >= 0 && nx_nseg <= kSegCap && tid < nx_nseg) {
                    /* level 3 (the last): the next task's segments */
                    const fg_work_seg sg = a.seg[nx_seg0 + tid];
                    nx_beg = sg.kv_begin;
                    nx_len = sg.kv_end - sg.kv_begin;
                    nx_lo = sg.rank_lo;
                    nx_hi = sg.rank_hi;
                    nx_pb = sg.page_base;
                    nx_segs = true;
                }
                if (restage) {
                    __syncthreads();
                    if (tid == 0) {
                        int acc = 0;
                        seg_cum[0] = 0;
                        for (int i = 1; i <= ns; i++) { acc += seg_cum[i]; seg_cum[i] = acc; }
                    }
                    __syncthreads();
                }
                const int L = seg_cum[ns];
                const int ntiles = (L + BN - 1) / BN;
                /* Every row of the row block sees every key of the chunk (one segment whose
                 * rank range holds every row, all positions below every row's causal limit):
                 * its full tiles skip the per-key mask, three shared loads and four compares
                 * per score (a shared prefix, an own suffix, a decode row). Same values as
                 * the masked path. Padding rows (past M) see nothing and never count. */
                bool vis_all = true;
#pragma unroll
                for (int hf = 0; hf < 2; hf++)
                    if (rqtok[hf] >= 0)
                        vis_all = vis_all && ns == 1 && seg_lo[0] <= rrank[hf] && rrank[hf] < seg_hi[0] &&
                                  seg_beg[0] + L <= rlim[hf];
                const bool chunk_full = __syncthreads_and(vis_all) != 0;

                /* Row r of tile t: locate its segment and position, start the page-index load
                 * (fill_start), then write the table slot (fill_end). */
                auto fill_start = [&](int t, int r, int &pos, int &sgi, int &pgv) {
                    const int idx = t * BN + r;
                    pos = INT_MAX;
                    sgi = -1;
                    pgv = -1;
                    if (idx < L) {
                        int lo = 0, hi = ns;
                        while (hi - lo > 1) {
                            const int mid = (lo + hi) >> 1;
                            if (seg_cum[mid] <= idx) lo = mid; else hi = mid;
                        }
                        pos = seg_beg[lo] + idx - seg_cum[lo];
                        sgi = lo;
                        pgv = a.page[seg_pb[lo] + (ps_shift >= 0 ? pos >> ps_shift : pos / ps)];
                    }
                };
                auto fill_end = [&](int ts, int r, int pos, int sgi, int pgv) {
                    meta_pos[ts * BN + r] = pos;
                    meta_lo[ts * BN + r] = sgi >= 0 ? seg_lo[sgi] : INT_MAX;
                    meta_hi[ts * BN + r] = sgi >= 0 ? seg_hi[sgi] : INT_MIN;
                    unsigned long long ka = 0, va = 0;
                    if (pgv >= 0) {
                        const int64_t slot = ps_shift >= 0 ? (pos & (ps - 1)) : pos % ps;
                        ka = (unsigned long long)(k + (int64_t)pgv * a.k_stride_page + slot * a.k_stride_token + k_head);
                        va = (unsigned long long)(v + (int64_t)pgv * a.v_stride_page + slot * a.v_stride_token + v_head);
                    }
                    *(ulonglong2 *)(tab_ad + 2 * (ts * BN + r)) = make_ulonglong2(ka, va);
                };
                /* Issue tile t's K and V rows from table slot ts into stage st. */
                auto issue_tile = [&](int ts, int st) {
                    uint16_t *kd = Ks + st * BN * D, *vd = Vs + st * BN * D;
#pragma unroll
                    for (int j = 0; j < BN / RPP; j++) {
                        const int r = lrow0 + j * RPP;
                        const ulonglong2 ad = *(const ulonglong2 *)(tab_ad + 2 * (ts * BN + r));
                        const int off = kv_off<D, WG>(r, lchunk);
                        /* past the stream's end: 16 zero bytes, and a source that exists */
                        const bool ok = ad.x != 0;
                        fg_cp_async16(kd + off, ok ? (const uint16_t *)ad.x + lchunk * 8 : k, ok ? 16 : 0);
                        fg_cp_async16(vd + off, ok ? (const uint16_t *)ad.y + lchunk * 8 : v, ok ? 16 : 0);
                    }
                    fg_cp_async_commit();
                };

                if (ntiles > 0) {
                    if (tid < 2 * BN) { /* prologue: tables of tiles 0 and 1 */
                        const int t = tid / BN, r = tid % BN;
                        int pos, sgi, pgv;
                        fill_start(t, r, pos, sgi, pgv);
                        fill_end(t, r, pos, sgi, pgv);
                    }
                    __syncthreads();
                    issue_tile(0, 0);
                }
                for (int t = 0; t < ntiles; ++t) {
                    const int st = t & 1, ts = t % 3;
                    const bool full = chunk_full && (t + 1) * BN <= L; /* uniform over the block */
                    fg_cp_async_wait<0>();
#if defined(FG_HAVE_WGMMA)
                    if (WG) fg_fence_proxy_async(); /* the copies, visible to wgmma's reads */
#endif
                    __syncthreads(); /* tile t and table t+1 visible; stage st^1, slot (t+2)%3 free */
                    if (t + 1 < ntiles) issue_tile((t + 1) % 3, st ^ 1);
                    const bool filling = fill_r >= 0 && t + 2 < ntiles;
                    int f_pos = 0, f_sgi = 0, f_pg = 0;
                    if (filling) fill_start(t + 2, fill_r, f_pos, f_sgi, f_pg);
                    if (wg_rb || warp_active) {
                    auto step = [&](auto nc_c, const int c0) {
                    constexpr int NC = decltype(nc_c)::value;
                    const uint16_t *kt = Ks + st * BN * D, *vt = Vs + st * BN * D;
                    float sacc[NC / 8][4];
#pragma unroll
                    for (int i = 0; i < NC / 8; i++) sacc[i][0] = sacc[i][1] = sacc[i][2] = sacc[i][3] = 0.f;
#if defined(FG_HAVE_WGMMA)
                    if (wg_rb) {
                        if constexpr (WG && NC == 64 && D <= 128) {
                        uint32_t af[D / 16][4]; /* all of Q's fragments first: wgmma reads them late */
#pragma unroll
                        for (int ks = 0; ks < D / 16; ks++) {
                            const int qr = rw * 16 + fg_ldm_a_row(lane);
                            ldsm_x4(af[ks], Qs + qr * D + fg_swizzle_chunk(qr, 2 * ks + fg_ldm_a_chunk(lane)) * 8);
                        }
                        const uint32_t kb = (uint32_t)__cvta_generic_to_shared(kt);
                        fg_wgmma_fence();
#pragma unroll
                        for (int ks = 0; ks < D / 16; ks++)
                            fg_wgmma<T, BN, 0>(&sacc[0][0], af[ks],
                                               fg_wgmma_desc_sw128(kb + (ks >> 2) * (BN * 128) + (ks & 3) * 32, 16, 1024), 1);
                        fg_wgmma_commit();
                        fg_wgmma_wait<0>();
#pragma unroll
                        for (int i = 0; i < NC / 8; i++)
#pragma unroll
                            for (int j = 0; j < 4; j++) fg_wgmma_pin(sacc[i][j]);
                        }
                    } else
#endif
                    {
#pragma unroll
                    for (int ks = 0; ks < D / 16; ks++) {
                        uint32_t af[4];
                        const int qr = rw * 16 + fg_ldm_a_row(lane);
                        ldsm_x4(af, Qs + qr * D + fg_swizzle_chunk(qr, 2 * ks + fg_ldm_a_chunk(lane)) * 8);
#pragma unroll
                        for (int np = 0; np < NC / 16; np++) {
                            uint32_t bf[4];
                            const int kr = c0 + np * 16 + fg_ldm_bk_row(lane);
                            ldsm_x4(bf, kt + kv_off<D, WG>(kr, 2 * ks + fg_ldm_bk_chunk(lane)));
                            mma16816<T>(sacc[2 * np], af, bf[0], bf[1]);
                            mma16816<T>(sacc[2 * np + 1], af, bf[2], bf[3]);
                        }
                    }
                    }
                    /* Mask (segment rank range, causal limit, past the stream's end) and
                     * the online-softmax update, per accumulator row. */
                    float tmax[2] = {-INFINITY, -INFINITY};
                    if (full) {
#pragma unroll
                        for (int nt = 0; nt < NC / 8; nt++)
#pragma unroll
                            for (int i = 0; i < 4; i++) {
                                const float s = sacc[nt][i] * sl2;
                                sacc[nt][i] = s;
                                tmax[i >> 1] = fmaxf(tmax[i >> 1], s);
                            }
                    } else {
#pragma unroll
                    for (int nt = 0; nt < NC / 8; nt++)
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            const int col = c0 + nt * 8 + fg_mma_c_col(lane, i), hf = i >> 1;
                            const int pos = meta_pos[ts * BN + col];
                            const bool vis = meta_lo[ts * BN + col] <= rrank[hf] &&
                                             rrank[hf] < meta_hi[ts * BN + col] && pos < rlim[hf];
                            const float s = vis ? sacc[nt][i] * sl2 : -INFINITY;
                            sacc[nt][i] = s;
                            tmax[hf] = fmaxf(tmax[hf], s);
                        }
                    }
                    float alpha[2], base[2];
#pragma unroll
                    for (int hf = 0; hf < 2; hf++) {
                        const uint64_t full = fg_lane_full_mask(32);
                        tmax[hf] = fmaxf(tmax[hf], fg_shfl_xor(full, tmax[hf], 1));
                        tmax[hf] = fmaxf(tmax[hf], fg_shfl_xor(full, tmax[hf], 2));
                        const float mn = fmaxf(rmax[hf], tmax[hf]);
                        base[hf] = mn == -INFINITY ? 0.f : mn; /* no key yet: avoid -inf - -inf */
                        alpha[hf] = exp2f(rmax[hf] - base[hf]);
                        rmax[hf] = mn;
                        rsum[hf] *= alpha[hf];
                    }
#pragma unroll
                    for (int nt = 0; nt < NC / 8; nt++)
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            const float p = exp2f(sacc[nt][i] - base[i >> 1]);
                            sacc[nt][i] = p;
                            rsum[i >> 1] += p;
                        }
#pragma unroll
                    for (int dt = 0; dt < D / 8; dt++) {
                        oacc[dt][0] *= alpha[0];
                        oacc[dt][1] *= alpha[0];
                        oacc[dt][2] *= alpha[1];
                        oacc[dt][3] *= alpha[1];
                    }
                    /* The S accumulator layout of two n8 tiles is the A fragment of one k16 step. */
#if defined(FG_HAVE_WGMMA)
                    if (wg_rb) {
                        if constexpr (WG && NC == 64 && D <= 128) {
                        uint32_t pf[NC / 16][4];
#pragma unroll
                        for (int kk = 0; kk < NC / 16; kk++) {
                            pf[kk][0] = fg_pack2<T>(sacc[2 * kk][0], sacc[2 * kk][1]);
                            pf[kk][1] = fg_pack2<T>(sacc[2 * kk][2], sacc[2 * kk][3]);
                            pf[kk][2] = fg_pack2<T>(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]);
                            pf[kk][3] = fg_pack2<T>(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3]);
                        }
                        const uint32_t vb = (uint32_t)__cvta_generic_to_shared(vt);
                        fg_wgmma_fence();
#pragma unroll
                        for (int kk = 0; kk < NC / 16; kk++)
                            fg_wgmma<T, D, 1>(&oacc[0][0], pf[kk],
                                              fg_wgmma_desc_sw128(vb + kk * 16 * 128, BN * 128, 1024), 1);
                        fg_wgmma_commit();
                        fg_wgmma_wait<0>();
#pragma unroll
                        for (int i = 0; i < D / 8; i++)
#pragma unroll
                            for (int j = 0; j < 4; j++) fg_wgmma_pin(oacc[i][j]);
                        }
                    } else
#endif
                    {
#pragma unroll
                    for (int kk = 0; kk < NC / 16; kk++) {
                        uint32_t pf[4];
                        pf[0] = fg_pack2<T>(sacc[2 * kk][0], sacc[2 * kk][1]);
                        pf[1] = fg_pack2<T>(sacc[2 * kk][2], sacc[2 * kk][3]);
                        pf[2] = fg_pack2<T>(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]);
                        pf[3] = fg_pack2<T>(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3]);
#pragma unroll
                        for (int dp = 0; dp < D / 16; dp++) {
                            uint32_t bf[4];
                            const int vr = c0 + kk * 16 + fg_ldm_bv_row(lane);
                            ldsm_x4_trans(bf, vt + kv_off<D, WG>(vr, 2 * dp + fg_ldm_bv_chunk(lane)));
                            mma16816<T>(oacc[2 * dp], pf, bf[0], bf[1]);
                            mma16816<T>(oacc[2 * dp + 1], pf, bf[2], bf[3]);
                        }
                    }
                    }
                    };
                    if (!SP || nrw == 4) step(FgIc<BN>{}, 0);
                    else if (nrw == 2) step(FgIc<BN / 2>{}, ch * (BN / 2));
                    else if constexpr (BN / 4 >= 16) step(FgIc<BN / 4>{}, ch * (BN / 4));
                    }
                    if (filling) fill_end((t + 2) % 3, fill_r, f_pos, f_sgi, f_pg);
                }
            }

            /* v8: combine the column groups' states (warps ch > 0 -> warp rw) through the
             * K/V stages: every tile is consumed and no copy is in flight. */
            if (SP && nrw < 4) {
                constexpr int XS = D / 2 + 4; /* floats per lane: O accumulator, max, sum */
                float *xs = (float *)Ks;
                __syncthreads();
                if (ch > 0 && warp_active) {
                    float *x = xs + (size_t)(warp - nrw) * XS * 32 + lane;
#pragma unroll
                    for (int dt = 0; dt < D / 8; dt++)
#pragma unroll
                        for (int i = 0; i < 4; i++) x[(dt * 4 + i) * 32] = oacc[dt][i];
                    x[(D / 2) * 32] = rmax[0];
                    x[(D / 2 + 1) * 32] = rmax[1];
                    x[(D / 2 + 2) * 32] = rsum[0];
                    x[(D / 2 + 3) * 32] = rsum[1];
                }
                __syncthreads();
                if (ch == 0 && warp_active) {
                    for (int c = 1; c < 4 / nrw; c++) {
                        const float *x = xs + (size_t)(c * nrw + rw - nrw) * XS * 32 + lane;
                        float sa[2], sb[2];
#pragma unroll
                        for (int hf = 0; hf < 2; hf++) {
                            const float mo = x[(D / 2 + hf) * 32], lo = x[(D / 2 + 2 + hf) * 32];
                            const float mn = fmaxf(rmax[hf], mo);
                            const float b = mn == -INFINITY ? 0.f : mn;
                            sa[hf] = exp2f(rmax[hf] - b);
                            sb[hf] = exp2f(mo - b);
                            rsum[hf] = rsum[hf] * sa[hf] + lo * sb[hf];
                            rmax[hf] = mn;
                        }
#pragma unroll
                        for (int dt = 0; dt < D / 8; dt++)
#pragma unroll
                            for (int i = 0; i < 4; i++)
                                oacc[dt][i] = oacc[dt][i] * sa[i >> 1] + x[(dt * 4 + i) * 32] * sb[i >> 1];
                    }
                }
            }
            /* Epilogue: the quad of lanes sharing a row sums its partial softmax sums. */
            if (V5) fg_cp_async_wait<0>(); /* an item with no KV left its Q copy unwaited */
            if (warp_active && (!SP || ch == 0)) {
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const uint64_t full = fg_lane_full_mask(32);
                    float l = rsum[hf];
                    l += fg_shfl_xor(full, l, 1);
                    l += fg_shfl_xor(full, l, 2);
                    if (rqtok[hf] < 0) continue; /* padding row past M */
                    const float inv = l > 0.f ? 1.f / l : 0.f;
                    const int heads = a.kv_head_count * a.group;
                    if (rslot[hf] < 0) {
                        uint16_t *o = (uint16_t *)a.o + (int64_t)rqtok[hf] * a.o_stride_token +
                                      (int64_t)rh[hf] * a.o_stride_head;
#pragma unroll
                        for (int dt = 0; dt < D / 8; dt++) {
                            const int d = dt * 8 + fg_mma_c_col(lane, 0);
                            *(uint32_t *)(o + d) =
                                (uint32_t)fg_from_f32<T>(oacc[dt][2 * hf] * inv) |
                                ((uint32_t)fg_from_f32<T>(oacc[dt][2 * hf + 1] * inv) << 16);
                        }
                    } else {
                        float *po = a.partial_o + ((size_t)rslot[hf] * heads + rhl[hf]) * a.head_dim_v;
#pragma unroll
                        for (int dt = 0; dt < D / 8; dt++) {
                            const int d = dt * 8 + fg_mma_c_col(lane, 0);
                            *(float2 *)(po + d) = make_float2(oacc[dt][2 * hf] * inv, oacc[dt][2 * hf + 1] * inv);
                        }
                    }
                    if ((lane & 3) == 0)
                        store_lse(a, rqtok[hf], rh[hf], rhl[hf], rslot[hf],
                                  l > 0.f ? rmax[hf] * kLn2 + logf(l) : -INFINITY);
                }
            }
        }
        if (FU && a.num_slots > 0) { /* FU: instantiated apart, so the default kernel is unchanged */
            /* Fused merge (split-K semaphore): this task's partial states are written;
             * publish them (fence), then one arrival per (q token, KV head g) of a row with
             * a slot. The arrival that completes the token's slot count merges the token's
             * slots for g's query heads in listed order (merge_pair, bitwise the separate
             * merge) and resets the counter for the next run. Nobody waits: no deadlock. */
            int *cnt = (int *)a.scratch;
            int *last = (int *)Ks; /* [kMmaThreads] q token to merge, or -1; tiles are done */
            __threadfence();
            for (int c = 0; c < nrows; c += kMmaThreads) {
                __syncthreads(); /* every thread's stores fenced; Ks / last free */
                int lq = -1;
                if (c + tid < nrows) {
                    const fg_row r = a.row[row0 + c + tid];
                    if (r.slot >= 0) {
                        int *ct = cnt + (size_t)r.qtok * a.kv_head_count + g;
                        const int n = a.merge_off[r.qtok + 1] - a.merge_off[r.qtok];
                        if (atomicAdd(ct, 1) + 1 == n) {
                            *ct = 0; /* every arrival of this run is in: reset for the next */
                            __threadfence(); /* acquire: the other slots' writes are visible */
                            lq = r.qtok;
                        }
                    }
                }
                last[tid] = lq;
                __syncthreads();
                const int nr = min(kMmaThreads, nrows - c);
                for (int pr = warp; pr < nr * a.group; pr += kMmaWarps) {
                    const int qt = last[pr / a.group];
                    if (qt >= 0) merge_pair<T, true, false>(a, qt, g * a.group + pr % a.group, lane, merge_slots_of(a, qt, lane));
                }
            }
            __syncthreads(); /* last[] (in Ks) read before the next task's tiles land there */
        }
#if FG_CUDA && defined(FG_KERNEL_TIMING)
        if (tid == 0 && bt < kFgtMaxTasks) g_fgt_task[2 * bt + 1] = clock64();
#endif
    }
#if FG_CUDA && defined(FG_KERNEL_TIMING)
    if (tid == 0 && blockIdx.x < kFgtMaxBlocks) {
        g_fgt_block[4 * blockIdx.x + 1] = fgt_gtimer();
        g_fgt_block[4 * blockIdx.x + 3] = clock64();
    }
#endif
#else
    (void)a;
#endif
}

#endif /* FG_CUDA */

/* Which matrix kernel runs (FG_GPU_KERNEL in the environment at context creation):
 * 4 (default: partial_mma4, v1's tiles with the per-tile row table built a step ahead;
 * plans with items of more than 16 rows run it as 5, measured faster there),
 * 5 (partial_mma4<V5 = true>: v4 + Q by cp.async and the segment table kept across row
 * blocks; for every plan),
 * 7 (partial_mma4<PF = true>: v4 + the next task's metadata chain loaded during the
 * current task; measured no faster than 4, session 4),
 * 8 (partial_mma4<SP = true>: v4 + a row block of <= 32 rows splits each tile's columns
 * over the idle warps, states combined in shared memory; session 5),
 * 9 (partial_mma4<WG = true>: v4's tiles with both products on sm_90a's warpgroup MMA;
 * builds with sm_90a code only, else 4; measured slower than 4 except W5, session 8),
 * 1 (partial_mma, the first version: the baseline the others are measured against).
 * The cross-task tile stream (partial_mma3, versions 3 and 6) was slower than 4 on every
 * workload (perf/NOTES-gpu.md, sessions 2 and 4) and was removed in session 7; it is in
 * git history before that. The planner's tile shapes (hip/tuning.h) are partial_mma4's. */
int g_kernel_version = 4;
/* Merge launched with programmatic dependent launch (sm_90+, CUDA): hides the launch gap
 * between the partial and the merge kernels. FG_GPU_MERGE_PDL=0 turns it off. Session 5. */
bool g_merge_pdl = false;
/* Merge fused into partial_mma4 (split-K semaphore on the workspace's arrival counters:
 * the last task to write a (q token, KV head)'s slots merges them). OFF by default:
 * correct, bitwise equal to the separate merge, sanitizer-clean, but measured 8-50 us
 * SLOWER on every merged workload (perf/NOTES-gpu.md, session 6). FG_GPU_FUSED_MERGE=1
 * turns it on. CUDA matrix path, kernel 4 only (partial_mma4<FU = true>). */
bool g_fused_merge = false;
bool fused_merge_on(int path) {
#if FG_CUDA
    return path == FG_PATH_MMA && g_fused_merge &&
           g_kernel_version == 4;
#else
    (void)path;
    return false;
#endif
}

#if FG_CUDA
/* Writes 1 where the code that runs on this device was compiled with sm_90a's features
 * (wgmma), 0 elsewhere: a build for sm_80/sm_90 alone has no v9 kernel body. */
__global__ void wgmma_probe(int *out) {
#if defined(FG_HAVE_WGMMA)
    *out = 1;
#else
    *out = 0;
#endif
}
#endif
/* At context creation only (it synchronizes). */
hipError_t wgmma_compiled(bool *yes) {
    *yes = false;
#if FG_CUDA
    int *d = nullptr, h = 0;
    hipError_t e = hipMalloc((void **)&d, sizeof(int));
    if (e != hipSuccess) return e;
    wgmma_probe<<<1, 1>>>(d);
    e = hipGetLastError();
    if (e == hipSuccess) e = hipMemcpy(&h, d, sizeof(int), hipMemcpyDeviceToHost);
    hipFree(d);
    if (e == hipErrorNoKernelImageForDevice) { (void)hipGetLastError(); return hipSuccess; }
    *yes = e == hipSuccess && h == 1;
    return e;
#else
    return hipSuccess;
#endif
}

template <int T, int D> hipError_t launch_partial(const fg_kernel_args *a, int path, hipStream_t s) {
#if FG_CUDA
    if (path == FG_PATH_MMA) {
        const int fused = fused_merge_on(path) ? 1 : 0;
        if (g_kernel_version == 8)
            partial_mma4<T, D, false, false, true><<<a->num_blocks, kMmaThreads, MmaCfg<D>::smem4, s>>>(*a);
        else if (g_kernel_version == 5)
            partial_mma4<T, D, true><<<a->num_blocks, kMmaThreads, MmaCfg<D>::smem4, s>>>(*a);
        else if (g_kernel_version == 7)
            partial_mma4<T, D, false, true><<<a->num_blocks, kMmaThreads, MmaCfg<D>::smem4, s>>>(*a);
        else if (g_kernel_version == 9 && D <= 128)
            partial_mma4<T, (D <= 128 ? D : 128), false, false, false, false, true>
                <<<a->num_blocks, kMmaThreads, MmaCfg<D>::smem4 + 1024, s>>>(*a);
        else if (g_kernel_version == 4 && !fused && a->max_item_rows * a->group > 16)
            /* Row blocks of more than 16 rows: v5 loads Q by cp.async, all rows' loads in
             * flight at once where v4's copy loop waits on each row's index then its Q row:
             * W3 -2.5 us, W5 -0.7, W1n32 and W2 within noise; W1n16 (16 rows) and decode
             * stay on v4 (session 8). */
            partial_mma4<T, D, true><<<a->num_blocks, kMmaThreads, MmaCfg<D>::smem4, s>>>(*a);
        else if (g_kernel_version == 4 && fused)
            partial_mma4<T, D, false, false, false, true><<<a->num_blocks, kMmaThreads, MmaCfg<D>::smem4, s>>>(*a);
        else if (g_kernel_version == 4)
            partial_mma4<T, D, false><<<a->num_blocks, kMmaThreads, MmaCfg<D>::smem4, s>>>(*a);
        else
            partial_mma<T, D><<<a->num_blocks, kMmaThreads, MmaCfg<D>::smem, s>>>(*a);
        return hipGetLastError();
    }
#endif
#if FG_HAVE_MFMA_PATH
    if (path == FG_PATH_MMA) return fg_partial_mfma_launch(a, s);
#endif
    (void)path;
    partial_portable<T, D><<<a->num_blocks, kPortableThreads, 0, s>>>(*a);
    return hipGetLastError();
}

template <int T> hipError_t launch_dims(const fg_kernel_args *a, int path, hipStream_t s) {
    switch (a->head_dim_qk) {
    case 64: return launch_partial<T, 64>(a, path, s);
    case 128: return launch_partial<T, 128>(a, path, s);
    case 256: return launch_partial<T, 256>(a, path, s);
    default: return hipErrorInvalidValue;
    }
}

} /* namespace */

bool fg_kernels_have_mma(int cc_major) {
#if FG_CUDA
    return cc_major >= 8;
#else
    (void)cc_major;
    return false; /* AMD: the backend asks fg_partial_mfma_arch_supported (hip/partial_mfma.h) */
#endif
}

hipError_t fg_kernels_init(bool mma) {
#if FG_CUDA
    if (mma) {
        const char *kv = getenv("FG_GPU_KERNEL");
        {
            int dev = 0, major = 0;
            const char *pe = getenv("FG_GPU_MERGE_PDL");
            g_merge_pdl = cudaGetDevice(&dev) == cudaSuccess &&
                          cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                          major >= 9 && !(pe && atoi(pe) == 0);
        }
        {
            const char *fe = getenv("FG_GPU_FUSED_MERGE");
            g_fused_merge = fe && atoi(fe) != 0;
        }
        g_kernel_version = 4;
        if (kv && (atoi(kv) == 1 || atoi(kv) == 5 || atoi(kv) == 7 || atoi(kv) == 8 || atoi(kv) == 9))
            g_kernel_version = atoi(kv);
        hipError_t e;
        if (g_kernel_version == 9) { /* v9 only where this build has sm_90a code for the device */
            bool wg = false;
            e = wgmma_compiled(&wg);
            if (e != hipSuccess) return e;
            if (!wg) g_kernel_version = 4;
        }
#define FG_SET_SMEM(T, D)                                                                          \
    e = hipFuncSetAttribute((const void *)partial_mma<T, D>,                                        \
                            hipFuncAttributeMaxDynamicSharedMemorySize, (int)MmaCfg<D>::smem);      \
    if (e != hipSuccess) return e;
        FG_SET_SMEM(FG_T_F16, 64) FG_SET_SMEM(FG_T_F16, 128) FG_SET_SMEM(FG_T_F16, 256)
        FG_SET_SMEM(FG_T_BF16, 64) FG_SET_SMEM(FG_T_BF16, 128) FG_SET_SMEM(FG_T_BF16, 256)
#undef FG_SET_SMEM
#define FG_SET_SMEM4(T, D)                                                                         \
    e = hipFuncSetAttribute((const void *)partial_mma4<T, D, false>,                                \
                            hipFuncAttributeMaxDynamicSharedMemorySize, (int)MmaCfg<D>::smem4);     \
    if (e != hipSuccess) return e;                                                                 \
    e = hipFuncSetAttribute((const void *)partial_mma4<T, D, true>,                                 \
                            hipFuncAttributeMaxDynamicSharedMemorySize, (int)MmaCfg<D>::smem4);     \
    if (e != hipSuccess) return e;                                                                 \
    e = hipFuncSetAttribute((const void *)partial_mma4<T, D, false, true>,                          \
                            hipFuncAttributeMaxDynamicSharedMemorySize, (int)MmaCfg<D>::smem4);     \
    if (e != hipSuccess) return e;                                                                 \
    e = hipFuncSetAttribute((const void *)partial_mma4<T, D, false, false, false, true>,            \
                            hipFuncAttributeMaxDynamicSharedMemorySize, (int)MmaCfg<D>::smem4);     \
    if (e != hipSuccess) return e;                                                                 \
    e = hipFuncSetAttribute((const void *)partial_mma4<T, D, false, false, true>,                   \
                            hipFuncAttributeMaxDynamicSharedMemorySize, (int)MmaCfg<D>::smem4);     \
    if (e != hipSuccess) return e;                                                                 \
    if (D <= 128) {                                                                                \
        e = hipFuncSetAttribute((const void *)partial_mma4<T, (D <= 128 ? D : 128), false, false, false, false, true>, \
                                hipFuncAttributeMaxDynamicSharedMemorySize, (int)MmaCfg<D>::smem4 + 1024); \
        if (e != hipSuccess) return e;                                                             \
    }
        FG_SET_SMEM4(FG_T_F16, 64) FG_SET_SMEM4(FG_T_F16, 128) FG_SET_SMEM4(FG_T_F16, 256)
        FG_SET_SMEM4(FG_T_BF16, 64) FG_SET_SMEM4(FG_T_BF16, 128) FG_SET_SMEM4(FG_T_BF16, 256)
#undef FG_SET_SMEM4
    }
#else
    (void)mma;
#endif
    return hipSuccess;
}

hipError_t fg_kernels_occupancy(int head_dim, int path, int *blocks_per_unit) {
    *blocks_per_unit = 0;
#if FG_CUDA
    if (path == FG_PATH_MMA && g_kernel_version == 9 && head_dim <= 128) {
        if (head_dim == 64)
            return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mma4<FG_T_F16, 64, false, false, false, false, true>, kMmaThreads, MmaCfg<64>::smem4 + 1024);
        if (head_dim == 128)
            return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mma4<FG_T_F16, 128, false, false, false, false, true>, kMmaThreads, MmaCfg<128>::smem4 + 1024);
        return hipErrorInvalidValue;
    }
    if (path == FG_PATH_MMA && g_kernel_version >= 4) {
        switch (head_dim) {
        case 64: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mma4<FG_T_F16, 64, false>, kMmaThreads, MmaCfg<64>::smem4);
        case 128: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mma4<FG_T_F16, 128, false>, kMmaThreads, MmaCfg<128>::smem4);
        case 256: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mma4<FG_T_F16, 256, false>, kMmaThreads, MmaCfg<256>::smem4);
        default: return hipErrorInvalidValue;
        }
    }
    if (path == FG_PATH_MMA) {
        switch (head_dim) {
        case 64: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mma<FG_T_F16, 64>, kMmaThreads, MmaCfg<64>::smem);
        case 128: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mma<FG_T_F16, 128>, kMmaThreads, MmaCfg<128>::smem);
        case 256: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_mma<FG_T_F16, 256>, kMmaThreads, MmaCfg<256>::smem);
        default: return hipErrorInvalidValue;
        }
    }
#endif
#if FG_HAVE_MFMA_PATH
    if (path == FG_PATH_MMA) return fg_partial_mfma_occupancy(head_dim, blocks_per_unit);
#endif
    (void)path;
    switch (head_dim) {
    case 64: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_portable<FG_T_F16, 64>, kPortableThreads, 0);
    case 128: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_portable<FG_T_F16, 128>, kPortableThreads, 0);
    case 256: return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_unit, partial_portable<FG_T_F16, 256>, kPortableThreads, 0);
    default: return hipErrorInvalidValue;
    }
}

#if FG_CUDA && defined(FG_KERNEL_TIMING)
#include <stdio.h>
#include <vector>
#include <algorithm>
namespace {
/* Debug build only: on the 3rd consecutive launch of the same plan shape (warm, inside the
 * bench's timed runs), read the partial kernel's per-block and per-task times back and
 * print: block span spread, start skew, time inside tasks, per-task time by row class with
 * a least-squares fit time = fixed + per_step * steps (step = one KV tile of one row block),
 * and the longest tasks. Synchronises the stream: never use under graph capture. */
void fgt_dump(const fg_kernel_args *a, hipStream_t stream) {
    static long long sig_last = -1;
    static int count = 0;
    const long long sig = ((long long)a->num_blocks << 40) ^ ((long long)a->num_tasks << 20) ^ a->num_qtok ^
                          ((long long)a->num_items << 52);
    count = sig == sig_last ? count + 1 : 1;
    sig_last = sig;
    if (count != 3 || a->num_blocks > kFgtMaxBlocks || a->num_tasks > kFgtMaxTasks) return;
    if (cudaStreamSynchronize(stream) != cudaSuccess) return;
    const int nb = a->num_blocks, nt = a->num_tasks, ni = a->num_items;
    std::vector<unsigned long long> blk(4 * (size_t)nb), tk(2 * (size_t)nt);
    cudaMemcpyFromSymbol(blk.data(), g_fgt_block, blk.size() * 8);
    cudaMemcpyFromSymbol(tk.data(), g_fgt_task, tk.size() * 8);
    std::vector<int> bto(nb + 1), bt(nt), iro(ni + 1), iso(ni + 1);
    cudaMemcpy(bto.data(), a->block_task_off, bto.size() * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(bt.data(), a->block_task, bt.size() * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(iro.data(), a->item_row_off, iro.size() * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(iso.data(), a->item_seg_off, iso.size() * 4, cudaMemcpyDeviceToHost);
    std::vector<fg_work_seg> sg(iso[ni] > 0 ? iso[ni] : 1);
    if (iso[ni] > 0) cudaMemcpy(sg.data(), a->seg, (size_t)iso[ni] * sizeof(fg_work_seg), cudaMemcpyDeviceToHost);
    const int BN = a->head_dim_qk <= 128 ? 64 : 32;
    unsigned long long g0 = ~0ull, g1 = 0, gsmax = 0;
    double clk = 0, gns = 0;
    std::vector<double> span(nb);
    for (int b = 0; b < nb; b++) {
        g0 = std::min(g0, blk[4 * b]);
        g1 = std::max(g1, blk[4 * b + 1]);
        gsmax = std::max(gsmax, blk[4 * b]);
        span[b] = (blk[4 * b + 1] - blk[4 * b]) / 1000.0;
        clk += (double)(blk[4 * b + 3] - blk[4 * b + 2]);
        gns += (double)(blk[4 * b + 1] - blk[4 * b]);
    }
    const double ghz = gns > 0 ? clk / gns : 1.0; /* cycles per ns */
    std::vector<double> ss(span);
    std::sort(ss.begin(), ss.end());
    double mean = 0;
    for (double x : span) mean += x;
    mean /= nb;
    printf("fgt: qtok %d kvh %d group %d items %d tasks %d blocks %d slots %d | kernel span %.1f us, "
           "start skew %.1f us, clock %.2f GHz\n",
           a->num_qtok, a->kv_head_count, a->group, ni, nt, nb, a->num_slots, (g1 - g0) / 1000.0,
           (gsmax - g0) / 1000.0, ghz);
    printf("fgt: block span us: min %.1f p10 %.1f median %.1f p90 %.1f max %.1f mean %.1f (max/mean %.2f)\n",
           ss[0], ss[nb / 10], ss[nb / 2], ss[(nb * 9) / 10], ss[nb - 1], mean, ss[nb - 1] / mean);
    /* per task */
    struct cls { const char *name; int n; double sx, sy, sxx, sxy, sum; } C[4] = {
        {"M<=16", 0, 0, 0, 0, 0, 0}, {"M<=32", 0, 0, 0, 0, 0, 0}, {"M<=64", 0, 0, 0, 0, 0, 0}, {"M>64", 0, 0, 0, 0, 0, 0}};
    struct top { double us; int M, tiles, nseg, b; };
    std::vector<top> tops;
    double intask = 0;
    std::vector<double> busy(nb, 0.0);
    for (int b = 0; b < nb; b++)
        for (int i = bto[b]; i < bto[b + 1]; i++) {
            const int task = bt[i], item = task / a->kv_head_count;
            const int M = (iro[item + 1] - iro[item]) * a->group;
            int L = 0;
            for (int j = iso[item]; j < iso[item + 1]; j++) L += sg[j].kv_end - sg[j].kv_begin;
            const int tiles = (L + BN - 1) / BN, rb = (M + 63) / 64, steps = tiles * rb;
            const double us = (double)(tk[2 * i + 1] - tk[2 * i]) / ghz / 1000.0;
            busy[b] += us;
            intask += us;
            cls &c = C[M <= 16 ? 0 : M <= 32 ? 1 : M <= 64 ? 2 : 3];
            c.n++; c.sx += steps; c.sy += us; c.sxx += (double)steps * steps; c.sxy += steps * us; c.sum += us;
            tops.push_back({us, M, tiles, iso[item + 1] - iso[item], b});
        }
    double spansum = 0;
    for (double x : span) spansum += x;
    printf("fgt: time inside tasks %.1f%% of block spans; ", 100.0 * intask / (spansum > 0 ? spansum : 1));
    int bmax = (int)(std::max_element(span.begin(), span.end()) - span.begin());
    printf("longest block %d: %d tasks, %.1f us in tasks of %.1f\n", bmax, bto[bmax + 1] - bto[bmax], busy[bmax],
           span[bmax]);
    for (auto &c : C) {
        if (!c.n) continue;
        const double den = c.n * c.sxx - c.sx * c.sx;
        const double slope = den > 0 ? (c.n * c.sxy - c.sx * c.sy) / den : 0.0;
        const double icpt = (c.sy - slope * c.sx) / c.n;
        printf("fgt:   %-6s tasks %6d  mean %.2f us  mean steps %.2f  fit: %.2f us fixed + %.3f us/step  "
               "(%.1f%% of task time)\n",
               c.name, c.n, c.sy / c.n, c.sx / c.n, icpt, slope, 100.0 * c.sum / (intask > 0 ? intask : 1));
    }
    std::sort(tops.begin(), tops.end(), [](const top &x, const top &y) { return x.us > y.us; });
    printf("fgt:   longest tasks:");
    for (size_t i = 0; i < tops.size() && i < 5; i++)
        printf(" [%.1f us M %d tiles %d segs %d blk %d]", tops[i].us, tops[i].M, tops[i].tiles, tops[i].nseg, tops[i].b);
    printf("\n");
    fflush(stdout);
}
} /* namespace */
#endif

hipError_t fg_kernels_launch(const fg_kernel_args *a, int path, hipStream_t stream) {
    hipError_t e = hipSuccess;
    if (a->num_blocks > 0) {
        e = a->q_dtype == FG_T_F16 ? launch_dims<FG_T_F16>(a, path, stream)
                                   : launch_dims<FG_T_BF16>(a, path, stream);
        if (e != hipSuccess) return e;
#if FG_CUDA && defined(FG_KERNEL_TIMING)
        if (path == FG_PATH_MMA && g_kernel_version >= 4) fgt_dump(a, stream);
#endif
    }
    if (a->num_slots > 0 && a->num_qtok > 0 && !(fused_merge_on(path) && a->num_blocks > 0)) {
        /* One wave per (q token, head) pair up to a cap; the kernel strides over the rest. */
        const int64_t pairs = (int64_t)a->num_qtok * a->kv_head_count * a->group;
        const int64_t want = (pairs + kMergeThreads / FG_WAVE_SIZE - 1) / (kMergeThreads / FG_WAVE_SIZE);
        const int grid = (int)(want < 65535 ? want : 65535);
        const bool fast = pairs <= kMergeFastPairs;
#if FG_CUDA
        if (g_merge_pdl && path == FG_PATH_MMA && a->num_blocks > 0) {
            cudaLaunchConfig_t cfg = {};
            cfg.gridDim = dim3((unsigned)grid);
            cfg.blockDim = dim3(kMergeThreads);
            cfg.dynamicSmemBytes = 0;
            cfg.stream = stream;
            cudaLaunchAttribute at[1];
            at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
            at[0].val.programmaticStreamSerializationAllowed = 1;
            cfg.attrs = at;
            cfg.numAttrs = 1;
            if (fast)
                return a->q_dtype == FG_T_F16 ? cudaLaunchKernelEx(&cfg, merge_states<FG_T_F16, true>, *a)
                                              : cudaLaunchKernelEx(&cfg, merge_states<FG_T_BF16, true>, *a);
            return a->q_dtype == FG_T_F16 ? cudaLaunchKernelEx(&cfg, merge_states<FG_T_F16, false>, *a)
                                          : cudaLaunchKernelEx(&cfg, merge_states<FG_T_BF16, false>, *a);
        }
#endif
        if (a->q_dtype == FG_T_F16) {
            if (fast) merge_states<FG_T_F16, true><<<grid, kMergeThreads, 0, stream>>>(*a);
            else merge_states<FG_T_F16, false><<<grid, kMergeThreads, 0, stream>>>(*a);
        } else {
            if (fast) merge_states<FG_T_BF16, true><<<grid, kMergeThreads, 0, stream>>>(*a);
            else merge_states<FG_T_BF16, false><<<grid, kMergeThreads, 0, stream>>>(*a);
        }
        e = hipGetLastError();
    }
    return e;
}
