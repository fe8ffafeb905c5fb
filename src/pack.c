/* Packing of single-request items; see pack.h. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "pack.h"
#include "sort_desc.h"

/* Most query rows (q tokens x group) of a pack on a matrix path. Every segment of a pack
 * is one request's, so each warp's rows see only their own tiles and the rest of its
 * work is masked: rows beyond one warp's m16 tile (pad_rows) cost a second warp's idle
 * matrix work on every tile, while the pack saves one fixed cost per member. So members
 * of at most FG_PACK_SHORT_TILES tiles (where the fixed cost dominates) may fill 32 rows,
 * longer ones one warp's 16. Measured on the H100 (perf/NOTES-gpu.md, session 10): W5's
 * 256 x 4 rows of 64 own tokens packed to at most 16 rows 76.2 us, 32 rows 70.1, 64 rows
 * 71.3; W5's non-shared plan (requests of 17 tiles) packed to 32 rows 391-394 us against
 * 313 at 16 rows and 329 unpacked. */
#define FG_PACK_MAX_M_SHORT 32
#define FG_PACK_SHORT_TILES 2

/* Pack sizes tried (items per pack, at most): the schedule's makespan decides. */
static const int32_t k_pack_sizes[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64};
#define PACK_NUM_SIZES ((int)(sizeof k_pack_sizes / sizeof k_pack_sizes[0]))

/* The predicted time of a packed task of `rows` rows (all partial, the worst case) over
 * kv tokens: fg_cost_task_us's expression, with the cost model's constants derived once.
 * Packs of a batch repeat the same (rows, kv) steps (sibling leaves of one length), so
 * results are memoised (direct mapped): the four divisions per candidate were most of
 * the pass. A pure function of (rows, kv): the memo changes no value. */
#define PACK_MEMO 64
typedef struct pack_memo {
    int32_t rows;
    int64_t kv;
    double v;
} pack_memo;

static double packed_cost(const fg_cost_fast *fc, const fg_cost_params *cost, pack_memo *memo, int32_t rows,
                          int64_t kv) {
    pack_memo *e = &memo[((uint64_t)rows * 0x9E3779B97F4A7C15ull ^ (uint64_t)kv * 0xC2B2AE3D27D4EB4Full) >> 58];
    if (e->rows == rows && e->kv == kv) return e->v;
    double pm = fg_cost_fast_mem_us(fc, rows, rows, kv);
    double pc = fg_cost_fast_compute_us(fc, rows, kv);
    double v = (pm > pc ? pm : pc) + cost->task_fixed_us;
    *e = (pack_memo){rows, kv, v};
    return v;
}

/* A run of tasks of one cost, for the schedule estimate (sorted by src/sort_desc.h). */
typedef struct pack_run {
    double c;
    int64_t n;
} pack_run;
FG_DEFINE_SORT_BY_COST_DESC(sort_pack_runs, pack_run)

static int packable(const fg_division *d, int32_t i) {
    if (d->item_seg_off[i + 1] - d->item_seg_off[i] != 1) return 0;
    const fg_seg *s = &d->seg[d->item_seg_off[i]];
    return s->rank_hi - s->rank_lo == 1;
}

static int64_t seg_len(const fg_division *d, int32_t i) {
    const fg_seg *s = &d->seg[d->item_seg_off[i]];
    return (int64_t)s->kv_end - s->kv_begin;
}

/* Runs of equal members (same length, rows and KV per member) with the same shape are
 * packed alike: the candidates visit shapes, not runs. Sibling leaves of one length
 * (W1, W2, W3, W5, the plan-time tree) give one shape per level. */
#define PACK_MAX_SHAPES 8
typedef struct pack_shape {
    int32_t len, rows; /* members per run, rows per member */
    int32_t max_rows;  /* most rows of one of its packs */
    int64_t kv;        /* KV tokens per member */
    double c1;         /* one member's item cost (its first run's first) */
    int64_t runs;
} pack_shape;

/* Packs of a run of n members at most kk each: their number, and as evenly as possible
 * (the first n % np packs hold one member more). */
static int32_t run_packs(int32_t n, int32_t kk) { return (n + kk - 1) / kk; }
static int32_t pack_size(int32_t n, int32_t np, int32_t p) { return n / np + (p < n % np ? 1 : 0); }

/* Members per pack for pack size k: at most lim_rows rows (at least one member). */
static int32_t pack_cap(int32_t lim_rows, int32_t rows, int32_t k) {
    const int32_t m = lim_rows / rows;
    return m < 1 ? 1 : (m < k ? m : k);
}

static int32_t gcd32(int32_t a, int32_t b) {
    while (b) { const int32_t t = a % b; a = b; b = t; }
    return a;
}

/* Predicted cost of the pack of items [j, j + m) of r rows each: a lone member keeps its
 * item's cost. kv_each: the members' KV length when equal, else -1 (summed here). */
static double pack_cost_of(const fg_division *d, const fg_cost_fast *fc, const fg_cost_params *cost,
                           pack_memo *memo, int32_t j, int32_t m, int32_t r, int64_t kv_each) {
    if (m == 1) return d->item_cost_us[j];
    int64_t kv = kv_each >= 0 ? kv_each * m : 0;
    for (int32_t q = j; kv_each < 0 && q < j + m; q++) kv += seg_len(d, q);
    return packed_cost(fc, cost, memo, r * m, kv);
}

/* Appends (c, count) to runs[0, *nr), merging with an equal last cost. */
static void push_run(pack_run *runs, int64_t *nr, double c, int64_t count) {
    if (count <= 0) return;
    if (*nr > 0 && runs[*nr - 1].c == c) runs[*nr - 1].n += count;
    else runs[(*nr)++] = (pack_run){c, count};
}

fg_status fg_pack_short_items(fg_division *d, const fg_cost_params *cost, const fg_cost_shape *shape,
                              int32_t kv_heads, int32_t num_blocks, int32_t *removed) {
    *removed = 0;
    const int32_t n = d->num_items;
    const int32_t group = shape->group > 0 ? shape->group : 1;
    /* rows of a pack: max_rows for members of at most short_kv tokens, long_rows else */
    const int matrix = cost->pad_rows > 1;
    const int32_t tile_kv = cost->tile_kv > 0 ? cost->tile_kv : 64;
    const int64_t short_kv = matrix ? (int64_t)FG_PACK_SHORT_TILES * tile_kv : INT64_MAX;
    const int32_t max_rows =
        (matrix && cost->tile_rows > FG_PACK_MAX_M_SHORT ? FG_PACK_MAX_M_SHORT : cost->tile_rows) / group;
    const int32_t long_rows = matrix ? (cost->pad_rows < cost->tile_rows ? cost->pad_rows : cost->tile_rows) / group
                                     : max_rows;
    if (max_rows < 2 || n < 2 || kv_heads < 1 || num_blocks < 1) return FG_SUCCESS;
    const int32_t H = kv_heads, B = num_blocks;

    /* Runs: maximal stretches of consecutive packable items of equal row counts (at most
     * max_rows / 2 rows each, else no pack of two fits) over distinct requests (one pack
     * never holds a request twice). run_len[i] > 0 at a run's first item, run_kv[i] its
     * members' KV length (-1: unequal). in_run[k]: the first item of the last run that
     * took an item of rank k (-1: none), over the forest's ranks (the segments name no
     * others). The evaluation's buffers follow. One allocation. */
    const int32_t nrank = d->num_ranks;
    /* the LPT estimates run on at most B / gcd(H, B) blocks (see below) */
    const int32_t RB = B / gcd32(H, B);
    const int32_t scr_ints = fg_lpt_scratch_ints(RB);
    size_t bytes = sizeof(pack_run) * 2 * ((size_t)n + 1) + sizeof(double) * ((size_t)n + 1 + (size_t)RB) +
                   sizeof(int64_t) * (2 * (size_t)n + 1) +
                   sizeof(int32_t) * ((size_t)n + (size_t)nrank + (size_t)scr_ints);
    pack_run *runs = malloc(bytes);
    if (!runs) return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_plan_create: out of host memory packing items");
    pack_run *rtmp = runs + (n + 1);
    double *lpt_c = (double *)(rtmp + (n + 1)), *load = lpt_c + (n + 1);
    int64_t *lpt_n = (int64_t *)(load + RB);
    int64_t *run_kv = lpt_n + (n + 1);
    int32_t *run_len = (int32_t *)(run_kv + n), *in_run = run_len + n, *scratch = in_run + nrank;
    for (int32_t k = 0; k < nrank; k++) in_run[k] = -1;
    int32_t head = -1, longest = 1, head_rows = 0;
    for (int32_t i = 0; i < n; i++) {
        run_len[i] = 0;
        if (!packable(d, i)) { head = -1; continue; }
        const int32_t r = d->item_row_off[i + 1] - d->item_row_off[i];
        const int32_t rank = d->seg[d->item_seg_off[i]].rank_lo;
        if (2 * r > max_rows) { head = -1; continue; }
        const int64_t kv = seg_len(d, i);
        if (head >= 0 && r == head_rows && in_run[rank] != head) {
            in_run[rank] = head;
            if (++run_len[head] > longest) longest = run_len[head];
            if (run_kv[head] != kv) run_kv[head] = -1;
            continue;
        }
        head = i;
        head_rows = r;
        in_run[rank] = i;
        run_len[i] = 1;
        run_kv[i] = kv;
    }
    if (longest < 2) {
        free(runs); /* (with the other buffers) */
        return FG_SUCCESS;
    }

    /* The items outside runs of two or more (base), the shapes of the equal runs, and
     * whether any run is unequal (visited run by run). */
    pack_shape shp[PACK_MAX_SHAPES];
    int nshp = 0, mixed = 0;
    int64_t nb = 0, base_tasks = 0;
    double base_total = 0.0;
    for (int32_t i = 0; i < n;) {
        const int32_t len = run_len[i] > 0 ? run_len[i] : 1;
        if (len == 1) {
            push_run(runs, &nb, d->item_cost_us[i], H);
            base_tasks += H;
            base_total += d->item_cost_us[i] * H;
            i++;
            continue;
        }
        const int32_t r = d->item_row_off[i + 1] - d->item_row_off[i];
        int s = 0;
        if (run_kv[i] >= 0)
            for (; s < nshp; s++)
                if (shp[s].len == len && shp[s].rows == r && shp[s].kv == run_kv[i]) break;
        if (run_kv[i] >= 0 && s < nshp) shp[s].runs++;
        else if (run_kv[i] >= 0 && nshp < PACK_MAX_SHAPES)
            shp[nshp++] = (pack_shape){len, r, run_kv[i] <= short_kv ? max_rows : long_rows, run_kv[i],
                                       d->item_cost_us[i], 1};
        else { run_kv[i] = -1; mixed = 1; } /* visited run by run */
        i += len;
    }

    fg_cost_fast fc;
    fg_cost_fast_init(cost, shape, &fc);
    pack_memo memo[PACK_MEMO];
    for (int k = 0; k < PACK_MEMO; k++) memo[k].rows = -1; /* no pack has -1 rows */

    /* Every task count is a multiple of H, so of g = gcd(H, blocks): LPT places each
     * class's tasks g at a time on g blocks of equal load, and its loads are g copies of
     * LPT's with counts / g on blocks / g. Where that is one block (H a multiple of the
     * blocks: the CPU's few threads), the makespan is the total over the blocks and no
     * LPT runs. Otherwise the base is sorted once and each candidate's packs merged in. */
    const int one_block = H % B == 0;
    if (!one_block) {
        sort_pack_runs(runs, rtmp, nb);
        int64_t w = 0; /* equal costs apart before the sort are neighbours after it */
        for (int64_t j = 0; j < nb; j++) {
            if (w > 0 && runs[w - 1].c == runs[j].c) runs[w - 1].n += runs[j].n;
            else runs[w++] = runs[j];
        }
        nb = w;
    }
    const pack_run *base = runs;
    pack_run *pk = runs + nb;

    /* Each pack size k, largest first: the items packed with it (runs cut into
     * ceil(len / k) packs), and the LPT makespan of their tasks (the scheduler's first
     * pass; its improvement passes come later, for the chosen plan only). As fg_divide
     * picks its division: a balanced candidate (imbalance <= FG_BALANCED_IMBALANCE)
     * beats an unbalanced one, then the smaller makespan wins; ties go to the larger packs (fewer
     * tasks: less fixed cost where the model is too coarse to see it). So packing never
     * unbalances a balanced division, even where a coarser plan would finish sooner (W3 on
     * the H100 table: packs of 4 predict 84.7 us at imbalance 1.20 against 86.8 at 1.08,
     * and measured 80.5 against 84.8; perf/NOTES-gpu.md, session 10). A k that cuts every
     * run as the last one did is the same plan, and once a balanced candidate is known,
     * one whose lower bound (longest task, mean load) exceeds its makespan cannot win:
     * neither is scheduled. */
    int32_t ck[PACK_NUM_SIZES];     /* the candidates scheduled: k, makespan, balanced */
    double cmk[PACK_NUM_SIZES];
    int cbal[PACK_NUM_SIZES], nc = 0;
    double bal_mk = INFINITY; /* the smallest makespan of a balanced candidate (the bound) */
    double mk1 = INFINITY;    /* the unpacked division's, when scheduled */
    int64_t last_sig = -1;
    int last_nc = -1;         /* the record of the last signature scheduled, -1: pruned */
    int ci_top = 0;
    while (ci_top + 1 < PACK_NUM_SIZES && k_pack_sizes[ci_top + 1] <= longest && k_pack_sizes[ci_top + 1] <= max_rows)
        ci_top++;
    for (int ci = ci_top; ci >= 0; ci--) {
        const int32_t k = k_pack_sizes[ci];
        int64_t np_all = 0, tasks = base_tasks, sig = 0;
        double total = base_total;
        for (int s = 0; s < nshp; s++) {
            const pack_shape *sp = &shp[s];
            const int32_t kk = pack_cap(sp->max_rows, sp->rows, k);
            const int32_t np = run_packs(sp->len, kk), lo = sp->len / np, hi = sp->len - lo * np;
            const double clo = lo == 1 ? sp->c1 : packed_cost(&fc, cost, memo, sp->rows * lo, sp->kv * lo);
            const int64_t per = sp->runs * H;
            if (hi > 0) {
                const double chi = packed_cost(&fc, cost, memo, sp->rows * (lo + 1), sp->kv * (lo + 1));
                push_run(pk, &np_all, chi, hi * per);
                total += chi * (double)(hi * per);
            }
            push_run(pk, &np_all, clo, (np - hi) * per);
            total += clo * (double)((np - hi) * per);
            tasks += np * per;
            sig += np * sp->runs;
        }
        for (int32_t i = 0; mixed && i < n;) { /* unequal runs, pack by pack */
            const int32_t len = run_len[i] > 0 ? run_len[i] : 1;
            if (len == 1 || run_kv[i] >= 0) { i += len; continue; }
            const int32_t r = d->item_row_off[i + 1] - d->item_row_off[i];
            const int32_t kk = pack_cap(long_rows, r, k); /* unequal members: the long limit */
            const int32_t np = run_packs(len, kk);
            for (int32_t p = 0, j = i; p < np; p++) {
                const int32_t m = pack_size(len, np, p);
                const double c = pack_cost_of(d, &fc, cost, memo, j, m, r, -1);
                push_run(pk, &np_all, c, H);
                total += c * H;
                j += m;
            }
            tasks += (int64_t)np * H;
            sig += np;
            i += len;
        }
        if (sig == last_sig) { /* the same packs as the last k */
            if (k == 1 && last_nc >= 0) mk1 = cmk[last_nc];
            continue;
        }
        last_sig = sig;
        last_nc = -1;
        const int32_t Bk = tasks < B ? (int32_t)tasks : B;
        double mk = 0.0;
        if (one_block) {
            mk = total / Bk; /* B divides every count: each block gets the same tasks */
        } else {
            sort_pack_runs(pk, rtmp, np_all);
            int64_t w = 0, x = 0, y = 0; /* merge: base first on equal costs (a stable order) */
            while (x < nb || y < np_all) {
                const pack_run e = y >= np_all || (x < nb && !(base[x].c < pk[y].c)) ? base[x++] : pk[y++];
                if (w > 0 && lpt_c[w - 1] == e.c) { lpt_n[w - 1] += e.n; continue; }
                lpt_c[w] = e.c;
                lpt_n[w++] = e.n;
            }
            if (lpt_c[0] > bal_mk || total / Bk > bal_mk) continue; /* bound above a balanced one */
            const int32_t g = gcd32(H, Bk);
            for (int64_t j = 0; j < w; j++) lpt_n[j] /= g;
            fg_lpt(lpt_c, lpt_n, (int32_t)w, Bk / g, load, NULL, scratch);
            for (int32_t b = 0; b < Bk / g; b++) mk = load[b] > mk ? load[b] : mk;
        }
        const int bal = mk <= FG_BALANCED_IMBALANCE * (total / Bk);
        if (bal && mk < bal_mk) bal_mk = mk;
        if (k == 1) mk1 = mk;
        last_nc = nc;
        ck[nc] = k;
        cmk[nc] = mk;
        cbal[nc++] = bal;
    }
    /* Never slower than the division unpacked; then balanced first, the smaller makespan,
     * the larger packs (the candidates came largest k first). A pruned candidate's
     * makespan exceeds a balanced one's, which then wins anyway. */
    int32_t best_k = 1;
    double hm = 0.0;
    for (int c = 0, have = 0, hb = 0; c < nc; c++) {
        if (cmk[c] > mk1) continue;
        if (!have || (cbal[c] && !hb) || (cbal[c] == hb && cmk[c] < hm)) {
            best_k = ck[c];
            hb = cbal[c];
            hm = cmk[c];
            have = 1;
        }
    }
    if (best_k == 1) {
        free(runs); /* (with the other buffers) */
        return FG_SUCCESS;
    }

    /* Members of a pack are consecutive items, whose segments and rows are already stored
     * back to back: packing only drops the item boundaries between them (in place). */
    int32_t out = 0, count = 0;
    for (int32_t i = 0; i < n;) {
        const int32_t len = run_len[i] > 0 ? run_len[i] : 1;
        if (len == 1) {
            d->item_seg_off[out] = d->item_seg_off[i];
            d->item_row_off[out] = d->item_row_off[i];
            d->item_cost_us[out] = d->item_cost_us[i];
            out++;
            i++;
            continue;
        }
        const int32_t r = d->item_row_off[i + 1] - d->item_row_off[i];
        const int32_t kk = pack_cap(run_kv[i] >= 0 && run_kv[i] <= short_kv ? max_rows : long_rows, r, best_k);
        const int32_t np = run_packs(len, kk);
        for (int32_t p = 0, j = i; p < np; p++) {
            const int32_t m = pack_size(len, np, p);
            d->item_seg_off[out] = d->item_seg_off[j];
            d->item_row_off[out] = d->item_row_off[j];
            d->item_cost_us[out] = pack_cost_of(d, &fc, cost, memo, j, m, r, run_kv[i]);
            out++;
            count += m - 1;
            j += m;
        }
        i += len;
    }
    d->item_seg_off[out] = d->item_seg_off[n];
    d->item_row_off[out] = d->item_row_off[n];
    d->num_items = out;
    *removed = count;
    free(runs); /* (with the other buffers) */
    return FG_SUCCESS;
}
