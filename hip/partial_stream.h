/*
 * partial_mma10 (v10): v4's tiles, tables and math, with the per-task start taken off
 * the critical path. Included by attention.hip inside its anonymous namespace, after
 * partial_mma4 (it uses MmaCfg, kBM, the ldmatrix / mma.sync wrappers and store_lse).
 *
 * Why: per-block clocks (perf/NOTES-gpu.md, sessions 5 and 8) fit every task as
 * ~3.5 us fixed + 2.7 us per 64-token step. The fixed part is a chain of dependent
 * loads (block_task -> item offsets -> segments -> page-table bases -> page ids -> the
 * first K/V tile, and the rows -> Q) that every task walks before its first step. v7
 * prefetched the metadata part into registers and gained nothing; v3/v6 streamed tiles
 * across tasks but lost v4's table built ahead in idle threads. v10 keeps v4's table and:
 *  - a window: once per block (and again when the window is used up) all threads load
 *    the metadata of up to kTaskCap of the block's tasks and their segments (with the
 *    page-table bases resolved) into shared memory, in parallel: 4 round trips per
 *    window instead of 4 per task;
 *  - the next task's first tile in flight: during the last two steps of a task the
 *    fillers build the next task's tables of tiles 0 and 1, its rows are copied to
 *    shared memory (cp.async), and at the top of the last step its tile 0 and its Q
 *    rows (into the second Q buffer) are issued into the stage the current task no
 *    longer needs. The next task starts with its first tile and Q on the way.
 * Tiles are counted per block (gt), so a tile's table slot (gt % 3) and stage (gt & 1)
 * are the same whichever task issued it.
 * Launched where every item has at most kSegCache segments and head_dim <= 128 (the
 * second Q buffer keeps two blocks per SM there); otherwise v4 / v5 run.
 */
constexpr int kTaskCap = 128;  /* tasks of one block staged per window (one per thread) */
constexpr int kSegCache = 256; /* segments staged per window; an item must fit */

/* Shared memory: everything but the two Q buffers, which follow it and hold the plan's
 * row-block height (q_rows: its largest M rounded up to 16, at most kBM) each: small
 * row blocks keep the block's shared memory at v4's size. Why it matters: two blocks of
 * 108 KiB leave the SM 28 KiB of L1 instead of 60. */
__host__ __device__ constexpr int stream_q_rows(int max_item_rows, int group) {
    return max_item_rows * group >= kBM ? kBM : (max_item_rows * group + 15) / 16 * 16;
}
template <int D> struct StreamCfg {
    using C = MmaCfg<D>;
    static constexpr size_t k_off = 0;
    static constexpr size_t v_off = k_off + C::kv_bytes;
    static constexpr size_t meta_off = v_off + C::kv_bytes;                 /* 4 x [3][BN] int */
    static constexpr size_t win_off = meta_off + (size_t)4 * 3 * C::BN * 4;  /* 7 x [kTaskCap] */
    static constexpr size_t seg_off = win_off + (size_t)7 * kTaskCap * 4;   /* 5 x [kSegCache] */
    static constexpr size_t row_off = seg_off + (size_t)5 * kSegCache * 4;  /* fg_row [kBM] */
    static constexpr size_t misc_off = row_off + (size_t)kBM * sizeof(fg_row);
    static constexpr size_t q_off = misc_off + 128; /* Q rows 128-byte aligned, as in v4 */
    static constexpr size_t smem_max = q_off + 2 * C::q_bytes; /* the attribute: the most a launch asks */
    static constexpr size_t smem(int q_rows) { return q_off + (size_t)2 * q_rows * D * 2; }
};

template <int T, int D, bool XT = true>
__global__ void __launch_bounds__(kMmaThreads) partial_mma10(fg_kernel_args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using C = MmaCfg<D>;
    using S = StreamCfg<D>;
    constexpr int BN = C::BN, CPR = C::CPR, RPP = C::RPP;
    static_assert(D <= 128 && 2 * BN <= kMmaThreads && BN % RPP == 0, "v10: head_dim <= 128");
    extern __shared__ __align__(16) unsigned char smem[];
    const int q_rows = stream_q_rows(a.max_item_rows, a.group);
    uint16_t *Qb = (uint16_t *)(smem + S::q_off); /* two Q buffers of q_rows x D */
    uint16_t *Ks = (uint16_t *)(smem + S::k_off);
    uint16_t *Vs = (uint16_t *)(smem + S::v_off);
    int *meta_pos = (int *)(smem + S::meta_off); /* [3][BN] each */
    int *meta_lo = meta_pos + 3 * BN;
    int *meta_hi = meta_lo + 3 * BN;
    int *tab_pg = meta_hi + 3 * BN;
    int *w_task = (int *)(smem + S::win_off); /* the window's tasks */
    int *w_row0 = w_task + kTaskCap;
    int *w_nrows = w_row0 + kTaskCap;
    int *w_gseg = w_nrows + kTaskCap; /* first segment in the work list */
    int *w_nseg = w_gseg + kTaskCap;
    int *w_sbase = w_nseg + kTaskCap; /* first segment in the window's cache */
    int *w_len = w_sbase + kTaskCap;  /* KV stream length */
    int *c_cum = (int *)(smem + S::seg_off);
    int *c_beg = c_cum + kSegCache;
    int *c_lo = c_beg + kSegCache;
    int *c_hi = c_lo + kSegCache;
    int *c_pb = c_hi + kSegCache;
    fg_row *nrow_s = (fg_row *)(smem + S::row_off); /* rows of the pre-issued task's first row block */
    int *misc = (int *)(smem + S::misc_off);        /* warp totals of the window scan */

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const uint16_t *q = (const uint16_t *)a.q;
    const uint16_t *k = (const uint16_t *)a.k;
    const uint16_t *v = (const uint16_t *)a.v;
    const float sl2 = a.scale * kLog2e;
    const int lchunk = tid % CPR, lrow0 = tid / CPR;
    const int ps = a.page_size;
    const int ps_shift = (ps & (ps - 1)) == 0 ? __ffs(ps) - 1 : -1; /* uniform */
    const int fill_r = tid - (kMmaThreads - BN);                     /* filler's tile row */
    const int khc = a.kv_head_count;
    const int bt_end = a.block_task_off[blockIdx.x + 1];
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); /* as partial_mma4 */
#endif
#if defined(FG_KERNEL_TIMING)
    if (tid == 0 && blockIdx.x < kFgtMaxBlocks) {
        g_fgt_block[4 * blockIdx.x] = fgt_gtimer();
        g_fgt_block[4 * blockIdx.x + 2] = clock64();
    }
#endif

    /* Stage the window of tasks starting at block-task position wb; returns its size. */
    auto stage_window = [&](int wb) -> int {
        __syncthreads(); /* the previous window's readers are done */
        const int n = min(kTaskCap, bt_end - wb);
        int ns = 0;
        if (tid < n) {
            const int task = a.block_task[wb + tid], item = task / khc;
            const int r0 = a.item_row_off[item], s0 = a.item_seg_off[item];
            w_task[tid] = task;
            w_row0[tid] = r0;
            w_nrows[tid] = a.item_row_off[item + 1] - r0;
            w_gseg[tid] = s0;
            ns = a.item_seg_off[item + 1] - s0;
            w_nseg[tid] = ns;
        }
        int incl = ns; /* block-wide inclusive scan of the segment counts */
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int y = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += y;
        }
        if (lane == 31) misc[warp] = incl;
        __syncthreads();
        for (int w = 0; w < warp; w++) incl += misc[w];
        if (tid < n) w_sbase[tid] = incl - ns;
        /* the tasks whose segments fit the cache (a prefix); the host guarantees >= 1 */
        const int nw = max(1, __syncthreads_count(tid < n && incl <= kSegCache));
        const int total = w_sbase[nw - 1] + w_nseg[nw - 1];
        for (int s = tid; s < total; s += kMmaThreads) {
            int lo = 0, hi = nw; /* the last task whose first cached segment is <= s */
            while (hi - lo > 1) {
                const int mid = (lo + hi) >> 1;
                if (w_sbase[mid] <= s) lo = mid; else hi = mid;
            }
            const fg_seg sg = a.seg[w_gseg[lo] + s - w_sbase[lo]];
            c_beg[s] = sg.kv_begin;
            c_cum[s] = sg.kv_end - sg.kv_begin; /* the length until the scan below */
            c_lo[s] = sg.rank_lo;
            c_hi[s] = sg.rank_hi;
            c_pb[s] = a.page_off[sg.src_req];
        }
        __syncthreads();
        if (tid < nw) { /* each task's segment starts in its stream, serially per task */
            int acc = 0;
            for (int j = w_sbase[tid], e = j + w_nseg[tid]; j < e; j++) {
                const int l = c_cum[j];
                c_cum[j] = acc;
                acc += l;
            }
            w_len[tid] = acc;
        }
        __syncthreads();
        return nw;
    };
    /* Row r of tile t of window task i: locate its segment and position, start the
     * page-index load (fill_start), then write table slot ts (fill_end). The task's
     * segment range is read from shared memory here, not held in registers across the
     * step (v10's first version kept the next task's in registers: every step 4-10%
     * slower). */
    auto fill_start = [&](int i, int t, int r, int &pos, int &lo_r, int &hi_r, int &pgv) {
        const int idx = t * BN + r;
        pos = INT_MAX;
        lo_r = INT_MAX;
        hi_r = INT_MIN;
        pgv = -1;
        if (idx < w_len[i]) {
            int lo = w_sbase[i], hi = lo + w_nseg[i];
            while (hi - lo > 1) {
                const int mid = (lo + hi) >> 1;
                if (c_cum[mid] <= idx) lo = mid; else hi = mid;
            }
            pos = c_beg[lo] + idx - c_cum[lo];
            lo_r = c_lo[lo];
            hi_r = c_hi[lo];
            pgv = a.page[c_pb[lo] + (ps_shift >= 0 ? pos >> ps_shift : pos / ps)];
        }
    };
    auto fill_end = [&](int ts, int r, int pos, int lo_r, int hi_r, int pgv) {
        meta_pos[ts * BN + r] = pos;
        meta_lo[ts * BN + r] = lo_r;
        meta_hi[ts * BN + r] = hi_r;
        tab_pg[ts * BN + r] = pgv;
    };
    /* Issue the K and V rows of the tile in table slot ts into stage st (no commit). */
    auto issue_tile = [&](int ts, int st, int64_t k_head, int64_t v_head) {
        uint16_t *kd = Ks + st * BN * D, *vd = Vs + st * BN * D;
#pragma unroll
        for (int j = 0; j < BN / RPP; j++) {
            const int r = lrow0 + j * RPP;
            const int pg = tab_pg[ts * BN + r], pos = meta_pos[ts * BN + r];
            const uint16_t *kp = k, *vp = v;
            int bytes = 0;
            if (pg >= 0) {
                const int64_t slot = ps_shift >= 0 ? (pos & (ps - 1)) : pos % ps;
                kp = k + (int64_t)pg * a.k_stride_page + slot * a.k_stride_token + k_head + lchunk * 8;
                vp = v + (int64_t)pg * a.v_stride_page + slot * a.v_stride_token + v_head + lchunk * 8;
                bytes = 16;
            }
            const int off = r * D + fg_swizzle_chunk(r, lchunk) * 8;
            fg_cp_async16(kd + off, kp, bytes);
            fg_cp_async16(vd + off, vp, bytes);
        }
    };
    /* Q rows mb .. mb + kBM of a task into buffer qd (no commit); qtok of item row i from
     * nrow_s when rows_s, else from the work list. */
    auto issue_q = [&](uint16_t *qd, int row0, int M, int mb, int kvh, bool rows_s) {
        static_assert((kBM * CPR) % kMmaThreads == 0, "Q copy loop");
        int qt[kBM * CPR / kMmaThreads];
#pragma unroll
        for (int j = 0; j < kBM * CPR / kMmaThreads; j++) {
            const int m = mb + (tid + j * kMmaThreads) / CPR;
            qt[j] = m >= M ? -1 : rows_s ? nrow_s[m / a.group].qtok : a.row[row0 + m / a.group].qtok;
        }
#pragma unroll
        for (int j = 0; j < kBM * CPR / kMmaThreads; j++) {
            const int i = tid + j * kMmaThreads, r = i / CPR, c = i % CPR, m = mb + r;
            const uint16_t *src = q;
            int bytes = 0;
            if (qt[j] >= 0) {
                src = q + (int64_t)qt[j] * a.q_stride_token + (int64_t)(kvh * a.group + m % a.group) * a.q_stride_head + c * 8;
                bytes = 16;
            }
            if (r < q_rows) fg_cp_async16(qd + r * D + fg_swizzle_chunk(r, c) * 8, src, bytes);
        }
    };

    int wb = a.block_task_off[blockIdx.x], wn = 0; /* the window: positions [wb, wb + wn) */
    int gt = 0;       /* tiles issued by this block before the current unit */
    int qb = 0;       /* the current unit's Q buffer */
    bool pre = false; /* the current task's first tile, tables, rows and Q were issued by the last */
    for (int bt = wb; bt < bt_end; ++bt) {
        if (bt == wb + wn) {
            wb = bt;
            wn = stage_window(bt);
        }
#if defined(FG_KERNEL_TIMING)
        if (tid == 0 && bt < kFgtMaxTasks) g_fgt_task[2 * bt] = clock64();
#endif
        const int wi = bt - wb;
        const int task = w_task[wi], g = task % khc, kvh = a.kv_head_begin + g;
        const int row0 = w_row0[wi], M = w_nrows[wi] * a.group;
        const int ntiles = (w_len[wi] + BN - 1) / BN;
        const int64_t k_head = (int64_t)kvh * a.k_stride_head, v_head = (int64_t)kvh * a.v_stride_head;
        /* the next task (in this window): its first unit is pre-issued from our last one;
         * n_fill: how many of its first tiles' tables we build (0: none, no pre-issue) */
        const int n_fill = XT && wi + 1 < wn && w_nrows[wi + 1] > 0 ? min(2, (w_len[wi + 1] + BN - 1) / BN) : 0;
        bool xt_done = false;

        for (int mb = 0; mb < M; mb += kBM) {
            const bool pre_unit = pre && mb == 0;
            const int xn = mb + kBM >= M && ntiles >= 2 ? n_fill : 0; /* > 0: pre-issue the next task */
            if (!pre_unit) {
                __syncthreads(); /* the last unit's readers of Q buffer qb are done */
                issue_q(Qb + qb * q_rows * D, row0, M, mb, kvh, false);
                fg_cp_async_commit();
            }
            const uint16_t *Qs = Qb + qb * q_rows * D;
            int rrank[2], rlim[2], rslot[2], rqtok[2], rh[2], rhl[2];
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int m = mb + warp * 16 + (lane >> 2) + 8 * hf;
                if (m < M) {
                    const fg_row r = pre_unit ? nrow_s[m / a.group] : a.row[row0 + m / a.group];
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
            const bool warp_active = mb + warp * 16 < M;
            float oacc[D / 8][4];
#pragma unroll
            for (int i = 0; i < D / 8; i++) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
            float rmax[2] = {-INFINITY, -INFINITY}, rsum[2] = {0.f, 0.f};

            if (!pre_unit && ntiles > 0) { /* prologue: tables of tiles 0 and 1, then tile 0 */
                if (tid < 2 * BN) {
                    const int t = tid / BN, r = tid % BN;
                    int pos, lo_r, hi_r, pgv;
                    fill_start(wi, t, r, pos, lo_r, hi_r, pgv);
                    fill_end((gt + t) % 3, r, pos, lo_r, hi_r, pgv);
                }
                __syncthreads();
                issue_tile(gt % 3, gt & 1, k_head, v_head);
                fg_cp_async_commit();
            }
            for (int t = 0; t < ntiles; ++t) {
                const int G = gt + t, st = G & 1, ts = G % 3;
                fg_cp_async_wait<0>();
                __syncthreads(); /* tile t, table t + 1 and rows visible; stage st^1, slot (G+2)%3 free */
                if (t + 1 < ntiles) {
                    if (xn > 0 && t + 2 == ntiles && tid < min(w_nrows[wi + 1], (kBM + a.group - 1) / a.group))
                        /* the next task's rows of its first row block (read at the next step) */
                        fg_cp_async16(nrow_s + tid, a.row + w_row0[wi + 1] + tid, 16);
                    issue_tile((G + 1) % 3, st ^ 1, k_head, v_head);
                    fg_cp_async_commit();
                }
                /* the filler's row: tile t + 2 of this task, or tile t + 2 - ntiles of the next */
                const bool fill_cur = t + 2 < ntiles;
                const bool filling = fill_r >= 0 && (fill_cur || t + 2 - ntiles < xn);
                int f_pos = 0, f_lo = 0, f_hi = 0, f_pg = 0;
                if (filling) fill_start(fill_cur ? wi : wi + 1, fill_cur ? t + 2 : t + 2 - ntiles, fill_r, f_pos, f_lo, f_hi, f_pg);
                if (warp_active) {
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
                    /* mask (segment rank range, causal limit, past the stream's end), online softmax */
                    float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
                    for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            const int col = nt * 8 + fg_mma_c_col(lane, i), hf = i >> 1;
                            const int pos = meta_pos[ts * BN + col];
                            const bool vis = meta_lo[ts * BN + col] <= rrank[hf] &&
                                             rrank[hf] < meta_hi[ts * BN + col] && pos < rlim[hf];
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
#pragma unroll
                    for (int kk = 0; kk < BN / 16; kk++) {
                        uint32_t pf[4]; /* S's accumulator layout of two n8 tiles = A of one k16 step */
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
                if (filling) fill_end((G + 2) % 3, fill_r, f_pos, f_lo, f_hi, f_pg);
            }
            if (xn > 0) {
                /* The next task's tile 0 and Q, issued before our epilogue (out of the step
                 * loop: with this in the last step, every step ran 4-10% slower). Stage
                 * (gt + ntiles) & 1 was last read in step ntiles - 2 and Q buffer qb ^ 1 by
                 * the last unit, both before the last step's barrier; its tables were
                 * filled in the last two steps, its rows copied with tile ntiles - 1. */
                const int n_kvh = a.kv_head_begin + w_task[wi + 1] % khc, G = gt + ntiles;
                issue_tile(G % 3, G & 1, (int64_t)n_kvh * a.k_stride_head, (int64_t)n_kvh * a.v_stride_head);
                issue_q(Qb + (qb ^ 1) * q_rows * D, w_row0[wi + 1], w_nrows[wi + 1] * a.group, 0, n_kvh, true);
                fg_cp_async_commit();
            }
            gt += ntiles;
            xt_done = xn > 0;
            if (ntiles == 0) fg_cp_async_wait<0>(); /* a unit with no KV left its Q copy unwaited */
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
                    const int heads = khc * a.group;
                    if (rslot[hf] < 0) {
                        uint16_t *o = (uint16_t *)a.o + (int64_t)rqtok[hf] * a.o_stride_token + (int64_t)rh[hf] * a.o_stride_head;
#pragma unroll
                        for (int dt = 0; dt < D / 8; dt++) {
                            const int d = dt * 8 + fg_mma_c_col(lane, 0);
                            *(uint32_t *)(o + d) = (uint32_t)fg_from_f32<T>(oacc[dt][2 * hf] * inv) |
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
                        store_lse(a, rqtok[hf], rh[hf], rhl[hf], rslot[hf], l > 0.f ? rmax[hf] * kLn2 + logf(l) : -INFINITY);
                }
            }
        }
        pre = xt_done;
        if (pre) qb ^= 1;
#if defined(FG_KERNEL_TIMING)
        if (tid == 0 && bt < kFgtMaxTasks) g_fgt_task[2 * bt + 1] = clock64();
#endif
    }
#if defined(FG_KERNEL_TIMING)
    if (tid == 0 && blockIdx.x < kFgtMaxBlocks) {
        g_fgt_block[4 * blockIdx.x + 1] = fgt_gtimer();
        g_fgt_block[4 * blockIdx.x + 3] = clock64();
    }
#endif
#else
    (void)a;
#endif
}
