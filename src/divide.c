/*
 * Task division: forest nodes -> work items (see divide.h for the contract).
 *
 * 1. Rows. A node's rows are the q tokens of its requests (DFS rank order) whose causal
 *    limit passes its first position. They are cut into row groups of one row block
 *    (tile_rows / group tokens): the kernels read each KV tile once per row block
 *    anyway (hip/attention.hip), so a bigger item would only serialise row blocks that
 *    separate items run in parallel, for the same KV traffic.
 * 2. Folding. A node much shorter than a KV tile (<= tile_kv / 2), whose extra masked
 *    work in its host's items costs less than its own items and partial states, becomes
 *    an extra segment (with its own rank range) of the last KV chunk of every row group
 *    of its host (the nearest unfolded ancestor) holding its rows. Its rows sit in
 *    exactly one host row group each, so coverage stays exact.
 * 3. KV chunks. With W the predicted work, each candidate target task cost
 *    T = W / (blocks * k) cuts every (node, row group) into the fewest equal,
 *    tile-aligned chunks below T, never shorter than the minimum chunk where the
 *    partial states it adds (written and merged) outweigh its KV bytes. A cheap LPT
 *    makespan picks k: the balanced candidate (imbalance <= 1.10) with the lowest
 *    predicted step time, else the most balanced. Single-request nodes fall out of the
 *    same rule as ordinary split-KV decode.
 * Everything is integer arithmetic on the inputs plus deterministic floating point in a
 * fixed order: the same inputs give the same bytes.
 */
#include "divide.h"

#include <math.h>
#ifdef FG_DIVIDE_DEBUG
#include <stdio.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "schedule.h"
#include "sort_desc.h"

typedef struct vec {
    void *p;
    int64_t n, cap;
    size_t elem;
} vec;

static int vec_grow(vec *v, int64_t n) {
    int64_t cap = v->cap ? v->cap : 64;
    while (cap < n) cap *= 2;
    void *q = realloc(v->p, (size_t)cap * v->elem);
    if (!q) return -1;
    v->p = q;
    v->cap = cap;
    return 0;
}

static inline int vec_reserve(vec *v, int64_t n) {
    return __builtin_expect(n <= v->cap, 1) ? 0 : vec_grow(v, n);
}

/* Exactly n elements (buffers whose size is known: no doubling slack on the heap). */
static int vec_reserve_exact(vec *v, int64_t n) {
    if (n <= v->cap) return 0;
    void *q = realloc(v->p, (size_t)(n > 0 ? n : 1) * v->elem);
    if (!q) return -1;
    v->p = q;
    v->cap = n;
    return 0;
}

static inline void *vec_push(vec *v) {
    if (__builtin_expect(v->n >= v->cap, 0) && vec_reserve(v, v->n + 1)) return NULL;
    return (char *)v->p + (size_t)(v->n++) * v->elem;
}

void fg_division_drop_lpt(fg_division *d) {
    if (!d) return;
    free((void *)d->lpt.cost);
    free((void *)d->lpt.count);
    free((void *)d->lpt.assign);
    free((void *)d->lpt.load);
    memset(&d->lpt, 0, sizeof d->lpt);
}

void fg_division_free(fg_division *d) {
    if (!d) return;
    free(d->item_seg_off);
    free(d->seg);
    free(d->item_row_off);
    free(d->row);
    free(d->item_cost_us);
    free(d->qtok_items);
    fg_division_drop_lpt(d);
    memset(d, 0, sizeof *d);
}

static fg_status check_input(const fg_divide_input *in, const fg_cost_params *cost, fg_division *out) {
    if (!in || !cost || !out) return fg_fail(FG_ERR_NULL_POINTER, "fg_divide: a NULL argument");
    const fg_forest *f = in->forest;
    if (!f || !in->q_len || !in->kv_len || !in->q_indptr)
        return fg_fail(FG_ERR_NULL_POINTER, "fg_divide: forest, q_len, kv_len or q_indptr is NULL");
    if (in->num_requests != f->num_requests || in->num_requests < 1)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_divide: num_requests = %d but the forest has %d",
                       in->num_requests, f->num_requests);
    if (in->group < 1 || in->kv_head_count < 1 || in->num_blocks < 1)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_divide: group = %d, kv_head_count = %d, num_blocks = %d "
                       "(each must be >= 1)", in->group, in->kv_head_count, in->num_blocks);
    if (in->head_dim_qk < 1 || in->head_dim_v < 1 || in->q_elem_bytes < 1 || in->kv_elem_bytes < 1 ||
        in->page_size < 1)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_divide: head dims, element sizes and page_size must be >= 1");
    if (!(cost->copy_gbs > 0.0) || !(cost->mma_tflops_f16 > 0.0) || !(cost->fma_tflops_f32 > 0.0) ||
        cost->tile_rows < 1 || cost->tile_kv < 1)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_divide: cost parameters without bandwidth, rates or tiles");
    return FG_SUCCESS;
}

/* ------------------------------------------------------------------ costs */

typedef struct dctx {
    const fg_divide_input *in;
    const fg_cost_params *p;
    fg_cost_shape sh;
    int32_t rpb;     /* q tokens per row block */
    int packed;      /* kernel packs all segments of an item into shared tiles (GPU) */
    int32_t *mc;     /* min_chunk memo: [3][rpb + 1] for relax 1, 2, MAX_RELAX (0 = unknown), or NULL */
    fg_cost_fast fc; /* the cost model's constants for this shape */
    struct icache {  /* item_cost memo, direct mapped (identical groups recur) */
        int32_t rows, partial;
        int64_t kv, fold_kv;
        double fold_cmp, v;
    } *ic;
    struct icache **ic_last; /* the entry the previous call hit or filled (with ic) */
} dctx;

#define IC_SIZE 64
/* geometry memo per candidate: 2^GEO_MEMO_BITS entries, indexed by a hash's top bits */
#define GEO_MEMO_BITS 5
#define GEO_MEMO (1 << GEO_MEMO_BITS)

/* Compute time of one folded segment in an item: a padding kernel computes every row
 * of the item over the packed stream; the CPU computes only the rows that see it. */
static double fold_compute_us(const dctx *c, int32_t item_rows, int32_t seeing, int32_t len) {
    if (c->packed) return fg_cost_fast_compute_us(&c->fc, item_rows, len) -
                          fg_cost_fast_compute_us(&c->fc, item_rows, 0);
    return fg_cost_fast_compute_us(&c->fc, seeing, len);
}

/* One item: `rows` tokens (`partial` of them partial) over a main segment of kv tokens
 * plus folded segments (fold_kv tokens, fold_cmp compute). */
static double item_cost(const dctx *c, int32_t rows, int32_t partial, int64_t kv, int64_t fold_kv,
                        double fold_cmp) {
    struct icache *e = c->ic ? *c->ic_last : NULL;
    /* calls come in runs of equal arguments (sibling groups, the items of one node):
     * the last entry is checked before hashing */
    if (e && e->rows == rows && e->partial == partial && e->kv == kv && e->fold_kv == fold_kv &&
        memcmp(&e->fold_cmp, &fold_cmp, sizeof fold_cmp) == 0)
        return e->v;
    e = NULL;
    if (c->ic) {
        uint64_t h = (uint64_t)rows * 0x9E3779B97F4A7C15ull ^ (uint64_t)partial * 0xC2B2AE3D27D4EB4Full ^
                     (uint64_t)kv * 0x165667B19E3779F9ull ^ (uint64_t)fold_kv * 0x27D4EB2F165667C5ull;
        e = &c->ic[(h >> 32) & (IC_SIZE - 1)];
        if (e->rows == rows && e->partial == partial && e->kv == kv && e->fold_kv == fold_kv &&
            memcmp(&e->fold_cmp, &fold_cmp, sizeof fold_cmp) == 0) {
            *c->ic_last = e;
            return e->v;
        }
    }
    double mem = fg_cost_fast_mem_us(&c->fc, rows, partial, kv + fold_kv);
    double cmp = fg_cost_fast_compute_us(&c->fc, rows, kv) + fold_cmp;
    double v = (mem > cmp ? mem : cmp) + c->p->task_fixed_us;
    if (e) {
        *e = (struct icache){rows, partial, kv, fold_kv, fold_cmp, v};
        *c->ic_last = e;
    }
    return v;
}

/* How far balance may push chunks below the minimum when the device would otherwise
 * idle (the step-time comparison still has to accept the extra partial states). */
#define MAX_RELAX 4

/* Shortest chunk worth its partial state: its KV bytes must be at least the
 * partial-state bytes it adds (written by the task, read by the merge), its memory
 * time twice the fixed task cost, and it must fill a KV tile. */
static int32_t min_chunk(const dctx *c, int32_t rows, int32_t relax) {
    double tok_bytes = ((double)c->sh.head_dim_qk + c->sh.head_dim_v) * c->sh.kv_elem_bytes;
    double part = (double)rows * c->sh.group * (c->sh.head_dim_v + 1) * 4.0 * 2.0;
    double lp = part / tok_bytes;
    double bw = c->p->copy_gbs * 1e3 / fg_cost_blocks(c->p) * fg_cost_gather_eff(c->p, c->sh.page_size);
    double lf = 2.0 * c->p->task_fixed_us * bw / tok_bytes;
    double l = (lp > lf ? lp : lf) / relax;
    if (l < c->p->tile_kv) l = c->p->tile_kv;
    return l > 1e9 ? 1000000000 : (int32_t)ceil(l);
}

/* min_chunk through the memo (the same value: a pure function of rows and relax). */
static int32_t min_chunk_m(const dctx *c, int32_t rows, int32_t relax) {
    int32_t k = relax == 1 ? 0 : relax == 2 ? 1 : relax == MAX_RELAX ? 2 : -1;
    if (!c->mc || k < 0 || rows < 0 || rows > c->rpb) return min_chunk(c, rows, relax);
    int32_t *m = &c->mc[k * (c->rpb + 1) + rows];
    if (*m == 0) *m = min_chunk(c, rows, relax);
    return *m;
}

int32_t fg_divide_min_chunk(const fg_divide_input *in, const fg_cost_params *cost, int32_t rows) {
    dctx c = {.in = in, .p = cost, .sh = {in->group, in->head_dim_qk, in->head_dim_v, in->q_elem_bytes,
                                          in->kv_elem_bytes, in->page_size},
              .rpb = 1, .packed = cost->pad_rows > 1};
    return min_chunk(&c, rows, MAX_RELAX);
}

/* Chunk geometry: `want` chunks of L tokens, tile-aligned when chunks span tiles. */
static void geometry(int32_t L, int32_t want, int32_t tile, int32_t *size, int32_t *count) {
    if (want < 1) want = 1;
    if (L >= 1 && L < (1 << 29) && tile < (1 << 29)) {
        /* the same values in 32-bit unsigned arithmetic (every sum stays below 2^31):
         * a 32-bit divide is several times cheaper than a 64-bit one */
        uint32_t uL = (uint32_t)L, uw = want < (1 << 29) ? (uint32_t)want : (uint32_t)(1 << 29);
        uint32_t us = (uL + uw - 1) / uw; /* want > L gives 1 either way */
        if (tile > 1 && us > (uint32_t)tile) {
            uint32_t ut = (uint32_t)tile, a = (us + ut - 1) / ut * ut;
            uint32_t n = (uL + a - 1) / a, tail = uL - (n - 1) * a;
            if ((int64_t)n == want && 2 * tail >= a) us = a;
        }
        *size = (int32_t)us;
        *count = (int32_t)((uL + us - 1) / us);
        return;
    }
    int32_t s = (int32_t)(((int64_t)L + want - 1) / want);
    /* Whole tiles avoid a padded tile per chunk, unless rounding up loses a chunk or
     * leaves a short tail (the tail would be a task below the minimum chunk). */
    if (tile > 1 && s > tile) {
        int32_t a = (s + tile - 1) / tile * tile;
        int64_t n = ((int64_t)L + a - 1) / a, tail = L - (n - 1) * a;
        if (n == want && 2 * tail >= a) s = a;
    }
    if (s < 1) s = 1;
    *size = s;
    *count = (int32_t)(((int64_t)L + s - 1) / s);
}

/* ------------------------------------------------------------------ LPT estimate */

/* m consecutive runs of n tasks of cost c each (equal groups, as sibling leaves give,
 * come as one entry: the sort and the passes below see a handful of entries instead of
 * one per group). The stable sort keeps such copies next to each other, so the sorted
 * entries expand to exactly the sorted single runs; sums over the runs still add
 * c x n once per copy, in that order, so they round as before. */
typedef struct crun { double c; int64_t n; int64_t m; } crun;

/* The runs being listed. A run (c, n) also joins the latest earlier entry of cost c
 * when that has count n, even with runs of other costs listed since: the stable sort
 * by cost puts it right after that entry anyway (no run of cost c lies between), so
 * the sorted entries expand to the same single runs, and a tree's DFS order, which
 * interleaves a few shapes (a node, its leaves, the next node), lists a handful of
 * entries instead of one per node. The latest entries of the last LIST_COSTS costs
 * are looked up; a cost not among them starts an entry (less merging, same result).
 * The entry being added to is held in `cur` (in registers) until another cost comes:
 * counted up in the list, its copies made a chain of loads and stores through memory. */
#define LIST_COSTS 4
typedef struct run_list {
    vec *runs;
    crun cur;      /* m == 0: none */
    int64_t at;    /* cur's place in the list, or -1: a new entry */
    double lc[LIST_COSTS];     /* costs of recent entries... */
    int64_t li[LIST_COSTS];    /* ...and where the latest entry of each is (-1: none) */
    int next;
} run_list;

static void run_list_init(run_list *l, vec *runs) {
    runs->n = 0;
    l->runs = runs;
    l->cur.m = 0;
    l->at = -1;
    for (int k = 0; k < LIST_COSTS; k++) l->li[k] = -1;
    l->next = 0;
}

/* cur into the list (back in its place, or as a new entry, then the latest of its cost).
 * Nonzero: out of memory. */
static inline int flush_runs(run_list *l) {
    if (!l->cur.m) return 0;
    vec *v = l->runs;
    if (l->at >= 0) {
        ((crun *)v->p)[l->at] = l->cur;
    } else {
        if (__builtin_expect(v->n >= v->cap, 0) && vec_reserve(v, v->n + 1)) return -1;
        int k = 0;
        while (k < LIST_COSTS && !(l->li[k] >= 0 && l->lc[k] == l->cur.c)) k++;
        if (k == LIST_COSTS) { /* a cost not listed recently: it takes the oldest slot */
            k = l->next;
            l->next = (k + 1) % LIST_COSTS;
        }
        l->lc[k] = l->cur.c;
        l->li[k] = v->n;
        ((crun *)v->p)[v->n++] = l->cur;
    }
    l->cur.m = 0;
    return 0;
}

/* Appends (c, n) (== as the sort compares: same class). Nonzero: out of memory. */
static inline int push_run(run_list *l, double c, int64_t n) {
    if (l->cur.m && l->cur.c == c) {
        if (l->cur.n == n) {
            l->cur.m++;
            return 0;
        }
    } else {
        if (flush_runs(l)) return -1;
        for (int k = 0; k < LIST_COSTS; k++)
            if (l->li[k] >= 0 && l->lc[k] == c) {
                const crun *e = (const crun *)l->runs->p + l->li[k];
                if (e->n == n) { /* reopened: the latest entry of cost c has count n */
                    l->cur = *e;
                    l->cur.m++;
                    l->at = l->li[k];
                    return 0;
                }
                break;
            }
    }
    if (flush_runs(l)) return -1; /* (cur, if it is of cost c, ends with another count) */
    l->cur = (crun){c, n, 1};
    l->at = -1;
    return 0;
}

/* Runs sorted by cost, largest first, stably (src/sort_desc.h). */
FG_DEFINE_SORT_BY_COST_DESC(sort_cruns, crun)

/* LPT makespan of the task multiset (the scheduler adds improvement passes on top).
 * lpt_c / lpt_n / scratch are caller buffers (runs, runs, fg_lpt_scratch_ints(blocks)). */
static double lpt_makespan(crun *runs, crun *tmp, int64_t nr, int32_t blocks, double *load, double *mean,
                           double *lpt_c, int64_t *lpt_n, int32_t *scratch, int32_t *assign, int32_t *B_out) {
    sort_cruns(runs, tmp, nr);
    int64_t tasks = 0;
    double total = 0.0;
    for (int64_t i = 0; i < nr; i++) {
        tasks += runs[i].n * runs[i].m;
        for (int64_t k = 0; k < runs[i].m; k++) total += runs[i].c * (double)runs[i].n;
    }
    int32_t B = tasks < blocks ? (int32_t)tasks : blocks;
    if (B < 1) B = 1;
    *mean = total / B;
    for (int64_t i = 0; i < nr; i++) { lpt_c[i] = runs[i].c; lpt_n[i] = runs[i].n * runs[i].m; }
    fg_lpt(lpt_c, lpt_n, (int32_t)nr, B, load, assign, scratch);
    *B_out = B;
    double mk = 0.0;
    for (int32_t b = 0; b < B; b++) mk = load[b] > mk ? load[b] : mk;
    return mk;
}

/* ------------------------------------------------------------------ divide */

typedef struct grp {
    int32_t node, t0, nt;   /* tokens toks[t0 .. t0 + nt) */
    int32_t solo;           /* tokens whose request has no other unfolded node */
    int32_t fold_head;      /* first fold entry, -1 none */
    int32_t fold_tail;
    int64_t fold_kv;
    int32_t fold_segs;
    int32_t tried;          /* refinement: cutting it once more did not help */
    double fold_cmp;
    int32_t size, count;    /* chunk geometry under evaluation */
    double ic0;             /* item_cost(nt, nt, L, 0, 0): the whole node, all rows partial, no folds */
    double icf;             /* item_cost(nt, nt, L, fold_kv, fold_cmp): the same with its folds */
    int32_t best_size, best_count;
} grp;

typedef struct eval_result {
    double mk, mean, imb, step;
    int64_t tasks;
    int32_t B, nr;          /* the LPT estimate's blocks and runs (lc, ln) */
    int32_t exact;          /* 1: mk is the LPT makespan (lc, ln, load, seq hold it); 0: an upper bound */
} eval_result;

/* Balanced (<= 1.10) beats unbalanced; among balanced the lower predicted step time,
 * among unbalanced the lower imbalance. */
static int better(const eval_result *a, const eval_result *b) {
    int ba = a->imb <= FG_BALANCED_IMBALANCE, bb = b->imb <= FG_BALANCED_IMBALANCE;
    if (ba != bb) return ba;
    return ba ? a->step < b->step : a->imb < b->imb - 1e-12;
}

/* LPT estimate of the division the groups' current geometry describes. -1: out of memory. */
static int evaluate(const dctx *c, const fg_forest *f, const grp *G, int64_t NG, const int32_t *host,
                    vec *runs, vec *rtmp, double *load, vec *lc, vec *ln, int32_t *scr, vec *seq,
                    double bound_imb, eval_result *r) {
    const int32_t H = c->in->kv_head_count;
    run_list rl;
    run_list_init(&rl, runs);
    int64_t merge_rows = 0, tasks = 0;
    for (int64_t g = 0; g < NG; g++) {
        int32_t n = G[g].node;
        if (host[n] >= 0) continue;
        int32_t L = f->length[n], rows = G[g].nt;
        int32_t cnt = G[g].count, s = G[g].size, last = L - (cnt - 1) * s;
        int32_t partial = rows - (cnt == 1 ? G[g].solo : 0);
        merge_rows += (int64_t)rows * cnt - (cnt == 1 ? G[g].solo : 0);
        if (cnt > 1 && push_run(&rl, item_cost(c, rows, partial, s, 0, 0.0), (int64_t)(cnt - 1) * H)) return -1;
        if (push_run(&rl, cnt == 1 && partial == rows
                              ? G[g].icf
                              : item_cost(c, rows, partial, last, G[g].fold_kv, G[g].fold_cmp),
                     H))
            return -1;
        tasks += (int64_t)cnt * H;
    }
    if (flush_runs(&rl)) return -1;
    if (vec_reserve(rtmp, runs->n)) return -1;
    r->exact = 0;
    if (bound_imb > 0.0) {
        /* LPT places the tasks of the last (cheapest) cost class c one by one on the least
         * loaded block: with the loads L[b] the earlier classes leave (exactly as LPT leaves
         * them: fg_lpt on those runs), they fill the slots L[b] + j c in increasing order,
         * so the makespan is at most lam + c once the slots at or below lam number at least
         * the class's tasks (and no block is already above lam + c). When that bound gives
         * imbalance <= bound_imb (with a margin for the rounding of the sums), the caller
         * needs nothing more exact. */
        crun *rp = runs->p;
        const int64_t nr = runs->n;
        sort_cruns(rp, rtmp->p, nr);
        int64_t nt = 0;
        double total = 0.0;
        for (int64_t i = 0; i < nr; i++) {
            nt += rp[i].n * rp[i].m;
            for (int64_t k = 0; k < rp[i].m; k++) total += rp[i].c * (double)rp[i].n;
        }
        int32_t B = nt < c->in->num_blocks ? (int32_t)nt : c->in->num_blocks;
        if (B < 1) B = 1;
        double mean = total / B;
        if (nr > 0 && mean > 0.0) {
            const double cl = rp[nr - 1].c;
            int64_t ts = nr - 1, ntail = 0;
            while (ts > 0 && rp[ts - 1].c == cl) ts--;
            for (int64_t i = ts; i < nr; i++) ntail += rp[i].n * rp[i].m;
            if (vec_reserve(lc, ts + 1) || vec_reserve(ln, ts + 1)) return -1;
            double *hc = lc->p;
            int64_t *hn = ln->p;
            for (int64_t i = 0; i < ts; i++) { hc[i] = rp[i].c; hn[i] = rp[i].n * rp[i].m; }
            if (ts > 0) fg_lpt(hc, hn, (int32_t)ts, B, load, NULL, scr);
            else for (int32_t k = 0; k < B; k++) load[k] = 0.0;
            const double lam = (bound_imb - 1e-4) * mean - cl;
            int64_t slots = 0, add = 0;
            int ok = cl > 0.0 && lam >= 0.0;
            double prev = NAN; /* LPT leaves runs of equal loads: each value divided once */
            /* Every block is looked at, with one branch per block on the value instead of
             * three: a block above lam + cl fails the bound whatever the others give, so
             * stopping there saved nothing, and slots still counts only blocks at or
             * below lam. */
            int over = 0;
            for (int32_t k = 0; k < (ok ? B : 0); k++) {
                const double x = load[k];
                over |= x > lam + cl;
                if (x != prev) {
                    prev = x;
                    add = 0;
                    if (x <= lam) {
                        double q = floor((lam - x) / cl);
                        add = q < 1e15 ? (int64_t)q + 1 : (int64_t)1e15; /* no overflow on tiny costs */
                    }
                }
                slots += add;
            }
            ok = ok && !over;
#ifdef FG_DIVIDE_DEBUG
            fprintf(stderr, "bound: lam=%.3f c=%.3f slots=%lld tail=%lld ok=%d\n", lam, cl, (long long)slots,
                    (long long)ntail, ok);
#endif
            if (ok && slots >= ntail) {
                r->mk = lam + cl;
                r->mean = mean;
                r->B = B;
                r->nr = (int32_t)nr;
                r->imb = r->mk / mean;
                r->step = fg_cost_step_us(c->p, r->mk, merge_rows * c->in->group * H, merge_rows ? 2 : 1);
                r->tasks = tasks;
                return 0;
            }
        }
    }
    if (vec_reserve(lc, runs->n) || vec_reserve(ln, runs->n) ||
        (seq->cap < tasks && vec_reserve_exact(seq, tasks)))
        return -1;
    r->exact = 1;
    r->mk = lpt_makespan(runs->p, rtmp->p, runs->n, c->in->num_blocks, load, &r->mean, lc->p, ln->p, scr,
                         seq->p, &r->B);
    r->nr = (int32_t)runs->n;
    r->imb = r->mean > 0.0 ? r->mk / r->mean : 1.0;
    r->step = fg_cost_step_us(c->p, r->mk, merge_rows * c->in->group * H, merge_rows ? 2 : 1);
    r->tasks = tasks;
    return 0;
}

typedef struct fold_ent { int32_t node, next; } fold_ent;

/* A group's ic0, item_cost(rows, rows, L, 0, 0), through the last four distinct
 * (rows, L) met: a function of the two (item_cost is pure), and a tree's groups come in
 * DFS order with a few shapes interleaved (a node, then its leaves, then the next node),
 * where checking only the group before called item_cost at every change of shape. */
typedef struct ic0_memo {
    int32_t rows[4], L[4];
    double v[4];
    int32_t next;
} ic0_memo;

/* The (rows, L) of the previous call and its value, checked first: sibling leaves come
 * in runs of one shape, which then skip the search. A struct apart from the memo's
 * arrays, so that it lives in registers (the search reloaded the arrays every group). */
typedef struct ic0_last {
    int32_t rows, L;
    double v;
} ic0_last;

static inline double ic0_of(const dctx *c, ic0_memo *m, ic0_last *last, int32_t rows, int32_t L) {
    if (rows == last->rows && L == last->L) return last->v;
    for (int k = 0; k < 4; k++)
        if (m->rows[k] == rows && m->L[k] == L) {
            *last = (ic0_last){rows, L, m->v[k]};
            return m->v[k];
        }
    const double v = item_cost(c, rows, rows, L, 0, 0.0);
    *last = (ic0_last){rows, L, v};
    m->rows[m->next] = rows;
    m->L[m->next] = L;
    m->v[m->next] = v;
    m->next = (m->next + 1) & 3;
    return v;
}

/* 1. The rows of node n: the q tokens of its requests (rank order) whose causal limit
 * passes its first position, with their limits and ranks. Returns how many. Out of
 * line for the same reason as emit_items (fg_divide's many live values spill).
 * (Decode batches do not come here: see fg_divide.) */
FG_NOINLINE static int32_t list_node_tokens(const fg_divide_input *in, const fg_forest *f, int32_t n, int32_t *t,
                                            int32_t *tl, int32_t *trk) {
    const int32_t *rq_len = in->q_len, *rkv_len = in->kv_len, *rq_ip = in->q_indptr, *rar = f->req_at_rank;
    const int32_t nb = f->begin[n], rhi = f->rank_hi[n];
    const int32_t *t0 = t;
    for (int32_t rk = f->rank_lo[n]; rk < rhi; rk++) {
        int32_t r = rar[rk], ql = rq_len[r];
        int32_t first = rkv_len[r] - ql + 1; /* limit of token 0 */
        int32_t i0 = nb - first + 1;         /* first token with limit > begin */
        if (i0 < 0) i0 = 0;
        int32_t base = rq_ip[r];
        if (ql - i0 == 1) { /* one token (decode): skip the vectorised loop's set-up */
            *t++ = base + i0; *tl++ = first + i0; *trk++ = rk;
            continue;
        }
        for (int32_t i = i0; i < ql; i++) { *t++ = base + i; *tl++ = first + i; *trk++ = rk; }
    }
    return (int32_t)(t - t0);
}

/* What emission reads: the forest, the groups with their chosen geometry, the folds,
 * and the listed tokens (q token, rank, causal limit). */
typedef struct emit_src {
    const fg_forest *f;
    const grp *G;
    int64_t NG;
    const int32_t *host;
    const fold_ent *folds;
    const int32_t *tok, *tok_rank, *tok_limit;
} emit_src;

/* The segments of the short nodes folded into a group's last chunk, after its own. */
static inline fg_seg *emit_folds(const emit_src *e, const grp *G, fg_seg *sg_w) {
    const fg_forest *f = e->f;
    for (int32_t ei = G->fold_head; ei >= 0; ei = e->folds[ei].next) {
        const int32_t m = e->folds[ei].node;
        *sg_w++ = (fg_seg){f->src_req[m], f->begin[m], f->begin[m] + f->length[m], f->rank_lo[m], f->rank_hi[m]};
    }
    return sg_w;
}

/* 4. Emission, node by node in DFS order, row group by row group, chunk by chunk, into
 * outputs sized beforehand (plain pointer writes); count[q] += the items listing q.
 * Out of line, with few live values: inside fg_divide this loop spilled its row to the
 * stack and read it back for every row. */
FG_NOINLINE static void emit_items(const emit_src *e, int32_t *count, int32_t *seg_off, int32_t *row_off,
                                   fg_seg *seg, fg_row *row, int64_t *num_off, int64_t *num_seg,
                                   int64_t *num_row) {
    const fg_forest *f = e->f;
    int32_t *so_w = seg_off, *ro_w = row_off;
    fg_seg *sg_w = seg;
    fg_row *w = row;
    *so_w++ = 0;
    *ro_w++ = 0;
    for (int64_t g = 0; g < e->NG; g++) {
        const grp *G = &e->G[g];
        const int32_t n = G->node;
        if (e->host[n] >= 0) continue;
        const int32_t b = f->begin[n], end = b + f->length[n], t1 = G->t0 + G->nt;
        for (int32_t j = 0; j < G->best_count; j++) {
            int32_t cb = b + j * G->best_size, ce = cb + G->best_size < end ? cb + G->best_size : end;
            const fg_row *r0 = w;
            for (int32_t i = G->t0; i < t1; i++) {
                const int32_t qt = e->tok[i], limit = e->tok_limit[i];
                if (limit <= cb) continue;
                w->qtok = qt;
                w->rank = e->tok_rank[i];
                w->limit = limit;
                w->slot = -1;
                w++;
                count[qt]++;
            }
            if (w == r0) continue; /* no token sees this chunk (q_len > 1 only) */
            *sg_w++ = (fg_seg){f->src_req[n], cb, ce, f->rank_lo[n], f->rank_hi[n]};
            if (j == G->best_count - 1) sg_w = emit_folds(e, G, sg_w);
            *so_w++ = (int32_t)(sg_w - seg);
            *ro_w++ = (int32_t)(w - row);
        }
    }
    *num_off = so_w - seg_off;
    *num_seg = sg_w - seg;
    *num_row = w - row;
}

/* emit_items for decode batches (one q token per request; fg_divide lists tokens by
 * rank). A row group's tokens are then the ranks [t0, t0 + nt), every one of them sees
 * every chunk (its limit, kv_len, is past the end of every node on its path), so a
 * chunk's rows are a plain copy of the prebuilt rows rank_row[t0 .. t0 + nt). The item
 * counts are added up by rank through a difference array (hits[R + 1], zero on entry)
 * and handed to the tokens at the end: the same counts as one count[q]++ per row, but
 * the copy loop carries no scattered read-modify-write. Same output as emit_items. */
FG_NOINLINE static void emit_items_decode(const emit_src *e, const fg_row *rank_row, int32_t R, int32_t *hits,
                                          int32_t *count, int32_t *seg_off, int32_t *row_off, fg_seg *seg,
                                          fg_row *row, int64_t *num_off, int64_t *num_seg, int64_t *num_row) {
    const fg_forest *f = e->f;
    int32_t *so_w = seg_off, *ro_w = row_off;
    fg_seg *sg_w = seg;
    fg_row *w = row;
    *so_w++ = 0;
    *ro_w++ = 0;
    for (int64_t g = 0; g < e->NG; g++) {
        const grp *G = &e->G[g];
        const int32_t n = G->node;
        if (e->host[n] >= 0) continue;
        const int32_t b = f->begin[n], end = b + f->length[n], t0 = G->t0, nt = G->nt;
        const int32_t cnt = G->best_count, size = G->best_size;
        const fg_seg s0 = {f->src_req[n], 0, 0, f->rank_lo[n], f->rank_hi[n]};
        for (int32_t j = 0; j < cnt; j++) {
            const int32_t cb = b + j * size, ce = cb + size < end ? cb + size : end;
            for (int32_t i = 0; i < nt; i++) w[i] = rank_row[t0 + i];
            w += nt;
            hits[t0]++;
            hits[t0 + nt]--;
            *sg_w = s0;
            sg_w->kv_begin = cb;
            sg_w->kv_end = ce;
            sg_w++;
            if (j == cnt - 1) sg_w = emit_folds(e, G, sg_w);
            *so_w++ = (int32_t)(sg_w - seg);
            *ro_w++ = (int32_t)(w - row);
        }
    }
    for (int32_t rk = 0, run = 0; rk < R; rk++) {
        run += hits[rk];
        count[rank_row[rk].qtok] += run;
    }
    *num_off = so_w - seg_off;
    *num_seg = sg_w - seg;
    *num_row = w - row;
}

/* 5. Exact item costs, once every token's item count (partial or direct) is known. */
FG_NOINLINE static void exact_item_costs(const dctx *c, int32_t num_items, const int32_t *so, const fg_seg *sg,
                                         const int32_t *ro, const fg_row *rw, const int32_t *count,
                                         const int32_t *partial_below, double *cost_us) {
    /* the arguments of the last four distinct items without folds: item_cost is a pure
     * function of them (the memo only saves the call), and a tree's items come in DFS
     * order with a few shapes interleaved (a node's items, then its leaves', then the
     * next node's), where remembering only the previous item called it at every change */
    int32_t p_nr[4] = {-1, -1, -1, -1}, p_partial[4] = {-1, -1, -1, -1}, p_next = 0;
    int64_t p_kv[4] = {-1, -1, -1, -1};
    double p_cost[4] = {0.0, 0.0, 0.0, 0.0};
    int32_t l_nr = -1, l_partial = -1;
    int64_t l_kv = -1;
    double l_cost = 0.0;
    for (int32_t it = 0; it < num_items; it++) {
        int32_t nr = ro[it + 1] - ro[it], partial = 0;
        if (partial_below) /* decode: the rows are the ranks rw[ro[it]].rank, +1, ... */
            partial = partial_below[rw[ro[it]].rank + nr] - partial_below[rw[ro[it]].rank];
        else
            for (int32_t k = ro[it]; k < ro[it + 1]; k++) partial += count[rw[k].qtok] > 1;
        int64_t main_kv = sg[so[it]].kv_end - sg[so[it]].kv_begin, fold_kv = 0;
        if (so[it + 1] - so[it] == 1) { /* no folded segments */
            /* the previous item's shape first, in registers: sibling leaves come in runs */
            if (nr == l_nr && partial == l_partial && main_kv == l_kv) {
                cost_us[it] = l_cost;
                continue;
            }
            int hit = -1;
            for (int k = 0; k < 4; k++)
                if (p_nr[k] == nr && p_partial[k] == partial && p_kv[k] == main_kv) hit = k;
            if (hit < 0) {
                hit = p_next;
                p_next = (p_next + 1) & 3;
                p_cost[hit] = item_cost(c, nr, partial, main_kv, 0, 0.0);
                p_nr[hit] = nr;
                p_partial[hit] = partial;
                p_kv[hit] = main_kv;
            }
            cost_us[it] = l_cost = p_cost[hit];
            l_nr = nr;
            l_partial = partial;
            l_kv = main_kv;
            continue;
        }
        double fold_cmp = 0.0;
        for (int32_t s = so[it] + 1; s < so[it + 1]; s++) {
            int32_t len = sg[s].kv_end - sg[s].kv_begin, seeing = 0;
            for (int32_t k = ro[it]; k < ro[it + 1]; k++)
                seeing += rw[k].rank >= sg[s].rank_lo && rw[k].rank < sg[s].rank_hi;
            fold_kv += len;
            fold_cmp += fold_compute_us(c, nr, seeing, len);
        }
        cost_us[it] = item_cost(c, nr, partial, main_kv, fold_kv, fold_cmp);
    }
}

#define OOM() do { st = fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_divide: out of host memory"); goto done; } while (0)

fg_status fg_divide(const fg_divide_input *in, const fg_cost_params *cost, fg_division *out) {
    fg_status st = check_input(in, cost, out);
    if (st != FG_SUCCESS) return st;
    memset(out, 0, sizeof *out);
    const fg_forest *f = in->forest;
    const int32_t N = f->num_nodes, R = in->num_requests, H = in->kv_head_count;
    dctx c = {.in = in, .p = cost, .sh = {in->group, in->head_dim_qk, in->head_dim_v, in->q_elem_bytes,
                                          in->kv_elem_bytes, in->page_size},
              .rpb = cost->tile_rows / in->group, .packed = cost->pad_rows > 1};
    if (c.rpb < 1) c.rpb = 1;
    fg_cost_fast_init(cost, &c.sh, &c.fc);
    struct icache ic_memo[IC_SIZE];
    for (int i = 0; i < IC_SIZE; i++) ic_memo[i].rows = -1; /* no real item has -1 rows */
    c.ic = ic_memo;
    struct icache *ic_last = NULL;
    c.ic_last = &ic_last;
    int32_t *mc_memo = calloc((size_t)3 * (size_t)(c.rpb + 1), sizeof(int32_t));
    c.mc = mc_memo;
    const int32_t Q = in->q_indptr[R];

    vec toks = {0, 0, 0, sizeof(int32_t)}, grps = {0, 0, 0, sizeof(grp)}, folds = {0, 0, 0, sizeof(fold_ent)};
    vec runs = {0, 0, 0, sizeof(crun)}, rtmp = {0, 0, 0, sizeof(crun)};
    vec lc = {0, 0, 0, sizeof(double)}, ln = {0, 0, 0, sizeof(int64_t)};
    /* the best estimate's LPT (runs, assignment, loads), kept for the scheduler */
    vec cur_seq = {0, 0, 0, sizeof(int32_t)}, best_seq = {0, 0, 0, sizeof(int32_t)};
    vec best_c = {0, 0, 0, sizeof(double)}, best_n = {0, 0, 0, sizeof(int64_t)};
    double *best_load = malloc(sizeof(double) * (size_t)(in->num_blocks > 0 ? in->num_blocks : 1));
    int32_t *lpt_scr = malloc(sizeof(int32_t) * (size_t)fg_lpt_scratch_ints(in->num_blocks));
    vec seg = {0, 0, 0, sizeof(fg_seg)}, row = {0, 0, 0, sizeof(fg_row)};
    vec seg_off = {0, 0, 0, sizeof(int32_t)}, row_off = {0, 0, 0, sizeof(int32_t)};
    /* node_g0[N + 1], host[N], unf[N]: one allocation */
    int32_t *node_g0 = malloc(sizeof(int32_t) * (3 * (size_t)N + 1));
    int32_t *host = node_g0 ? node_g0 + N + 1 : NULL, *unf = node_g0 ? host + N : NULL;
    int32_t *tok_rank_buf = NULL, *rank_tok = NULL, *rank_hits = NULL;
    fg_row *rank_row = NULL; /* decode: each rank's row, built once (emit_items_decode) */
    vec tlim = {0, 0, 0, sizeof(int32_t)}; /* causal limit of each listed token (parallel to toks) */
    int32_t *count = calloc((size_t)(Q > 0 ? Q : 1), sizeof *count);
    uint8_t *solo_req = calloc((size_t)R, 1);
    double *load = malloc(sizeof(double) * (size_t)in->num_blocks);
    if (!node_g0 || !host || !unf || !count || !solo_req || !load || !lpt_scr || !mc_memo || !best_load) OOM();

    /* 1. Rows per node, cut into row groups. */
    {   /* upper bound of the listed tokens: each request's q tokens once per node on its path */
        int64_t bound = 0;
        for (int32_t r = 0; r < R; r++) /* a node's depth is the node count of its path */
            bound += (int64_t)in->q_len[r] * f->depth[f->req_node[r]];
        /* The row groups, sized once: node n lists t_n <= bound tokens in all, cut into
         * ceil(t_n / rpb) <= t_n / rpb + 1 groups, so bound / rpb + N bounds them.
         * Growing by doubling copied the (96-byte) groups three times over for a few
         * hundred nodes. */
        if (vec_reserve_exact(&grps, bound / c.rpb + N + 1)) OOM();
        /* Decode batches (one q token per request): that token's limit (kv_len) passes
         * the first position of every node on its path, so every node lists exactly the
         * tokens of its rank range. Listed by rank once (token, limit, rank), a node's
         * rows are then that range itself, [rank_lo, rank_hi), with nothing copied per
         * node. Otherwise each node's rows are listed (copied) one after another. */
        int decode = 1;
        for (int32_t r = 0; r < R && decode; r++) decode = in->q_len[r] == 1;
        if (decode) {
            /* one block: the listed tokens' ranks (R ints: the ranks themselves), emission's
             * hit counts (R + 1 ints), then the rows by rank, which hold each token and
             * limit (emit_items_decode copies them; nothing else reads those) */
            if (!(rank_tok = malloc(sizeof(int32_t) * (2 * (size_t)R + 1) + sizeof(fg_row) * (size_t)R))) OOM();
            rank_hits = rank_tok + R;
            rank_row = (fg_row *)(rank_hits + R + 1);
            memset(rank_hits, 0, sizeof(int32_t) * ((size_t)R + 1));
            for (int32_t rk = 0; rk < R; rk++) {
                const int32_t r = f->req_at_rank[rk];
                rank_tok[rk] = rk;
                rank_row[rk] = (fg_row){in->q_indptr[r], rk, in->kv_len[r], -1};
            }
        } else {
            if (vec_reserve_exact(&toks, bound + 1) || vec_reserve_exact(&tlim, bound + 1)) OOM();
            /* rank of each listed token, for the folding searches */
            if (!(tok_rank_buf = malloc(sizeof(int32_t) * (size_t)(bound + 1)))) OOM();
        }
    }
    ic0_memo ic0m = {{-1, -1, -1, -1}, {0}, {0.0}, 0};
    ic0_last ic0l = {-1, -1, 0.0}; /* no group has -1 rows */
    double W0 = 0.0; /* step 3's sum, as it is when nothing gets folded (see there) */
    for (int32_t n = 0; n < N; n++) {
        node_g0[n] = (int32_t)grps.n;
        host[n] = -1;
        int32_t t0, nt;
        if (rank_tok) {
            t0 = f->rank_lo[n];
            nt = f->rank_hi[n] - t0;
        } else {
            t0 = (int32_t)toks.n;
            toks.n += list_node_tokens(in, f, n, (int32_t *)toks.p + toks.n, (int32_t *)tlim.p + toks.n,
                                       tok_rank_buf + toks.n);
            tlim.n = toks.n;
            nt = (int32_t)toks.n - t0;
        }
        for (int32_t g0 = 0; g0 < nt; g0 += c.rpb) {
            const int32_t gnt = nt - g0 < c.rpb ? nt - g0 : c.rpb;
            const double ic0 = ic0_of(&c, &ic0m, &ic0l, gnt, f->length[n]);
            grp *g = vec_push(&grps);
            if (!g) OOM();
            /* one struct store of values in registers: field by field, every store (an
             * int64 among them) might have changed grps' count, reloaded each time (and a
             * memset compiles to a slow rep stos) */
            *g = (grp){.node = n, .t0 = t0 + g0, .nt = gnt, .fold_head = -1, .fold_tail = -1, .ic0 = ic0,
                       .icf = ic0};
            W0 += ic0;
        }
    }
    node_g0[N] = (int32_t)grps.n;
    /* the listed tokens: q token, causal limit and rank (decode batches: the ranks, by
     * rank; their tokens and limits are in rank_row) */
    const int32_t *tk = rank_tok ? NULL : (const int32_t *)toks.p;
    const int32_t *tkl = rank_tok ? NULL : (const int32_t *)tlim.p;
    const int32_t *tkr = rank_tok ? rank_tok : tok_rank_buf;

    /* 2. Folding, parents first (DFS preorder), so a folded parent's host is known. */
    const int32_t fold_max = cost->tile_kv / 2;
    for (int32_t n = 0; n < N; n++) {
        int32_t par = f->parent[n];
        if (par < 0 || f->length[n] > fold_max || node_g0[n + 1] == node_g0[n]) continue;
        int32_t h = host[par] >= 0 ? host[par] : par;
        grp *G = grps.p;
        /* host groups holding n's ranks: tokens are in rank order */
        int32_t ht0 = G[node_g0[h]].t0, hn = 0;
        for (int32_t g = node_g0[h]; g < node_g0[h + 1]; g++) hn += G[g].nt;
        int32_t lo = 0, hi = hn;
        while (lo < hi) { int32_t m = (lo + hi) / 2; if (tkr[ht0 + m] < f->rank_lo[n]) lo = m + 1; else hi = m; }
        int32_t a = lo;
        lo = a; hi = hn;
        while (lo < hi) { int32_t m = (lo + hi) / 2; if (tkr[ht0 + m] < f->rank_hi[n]) lo = m + 1; else hi = m; }
        int32_t b = lo; /* host tokens [a, b) have n's ranks */
        if (a >= b) continue;
        int32_t ga = node_g0[h] + a / c.rpb, gb = node_g0[h] + (b - 1) / c.rpb;
        double own = 0.0, extra = 0.0;
        int32_t L = f->length[n];
        for (int32_t g = node_g0[n]; g < node_g0[n + 1]; g++)
            own += G[g].ic0 +
                   (double)G[g].nt * in->group * cost->merge_us_per_row;
        for (int32_t g = ga; g <= gb; g++) {
            int32_t s0 = G[g].t0 - ht0 > a ? G[g].t0 - ht0 : a;
            int32_t s1 = G[g].t0 - ht0 + G[g].nt < b ? G[g].t0 - ht0 + G[g].nt : b;
            double mem = fg_cost_fast_mem_us(&c.fc, 0, 0, L);
            double cmp = fold_compute_us(&c, G[g].nt, s1 - s0, L);
            extra += mem > cmp ? mem : cmp;
        }
        if (extra > own) continue;
        host[n] = h;
        for (int32_t g = ga; g <= gb; g++) {
            int32_t s0 = G[g].t0 - ht0 > a ? G[g].t0 - ht0 : a;
            int32_t s1 = G[g].t0 - ht0 + G[g].nt < b ? G[g].t0 - ht0 + G[g].nt : b;
            fold_ent *e = vec_push(&folds);
            if (!e) OOM();
            G = grps.p;
            e->node = n;
            e->next = -1;
            int32_t ei = (int32_t)folds.n - 1;
            if (G[g].fold_tail >= 0) ((fold_ent *)folds.p)[G[g].fold_tail].next = ei;
            else G[g].fold_head = ei;
            G[g].fold_tail = ei;
            G[g].fold_kv += L;
            G[g].fold_segs++;
            G[g].fold_cmp += fold_compute_us(&c, G[g].nt, s1 - s0, L);
        }
    }

    /* Requests whose only unfolded node is their root write O directly when that root is
     * not split: no partial state, no merge. */
    grp *G = grps.p;
    const int64_t NG = grps.n;
    /* unfolded nodes on each root path: one pass in preorder (parents first), then one
     * lookup per request, instead of a walk up every request's path. Nothing folded (no
     * fold entries): every node on the path counts, and the count is the node's depth,
     * with no chain through unf (each node waited on its parent's store). */
    int any_solo = 0; /* none: every group's solo stays 0, and the roots need no pass */
    if (folds.n == 0) {
        for (int32_t r = 0; r < R; r++) {
            solo_req[r] = f->depth[f->req_node[r]] == 1;
            any_solo |= solo_req[r];
        }
    } else {
        for (int32_t v = 0; v < N; v++)
            unf[v] = (f->parent[v] >= 0 ? unf[f->parent[v]] : 0) + (host[v] < 0);
        for (int32_t r = 0; r < R; r++) {
            solo_req[r] = unf[f->req_node[r]] == 1;
            any_solo |= solo_req[r];
        }
    }
    for (int32_t n = 0; n < N && any_solo; n++) { /* the roots' groups */
        if (f->parent[n] >= 0) continue;
        for (int32_t g = node_g0[n]; g < node_g0[n + 1]; g++)
            for (int32_t i = G[g].t0; i < G[g].t0 + G[g].nt; i++)
                G[g].solo += solo_req[f->req_at_rank[tkr[i]]];
    }

    /* 3. KV chunks: pick the target task cost. W0, the work of the whole nodes, adds
     * each unfolded group's icf in group order; with nothing folded that is every
     * group's ic0 (icf starts as ic0), which step 1 summed in the same order as it made
     * the groups (the same sum, bit for bit, without one more pass over them). */
    if (folds.n > 0) {
        W0 = 0.0;
        for (int64_t g = 0; g < NG; g++) {
            if (host[G[g].node] >= 0) continue;
            if (G[g].fold_segs)
                G[g].icf = item_cost(&c, G[g].nt, G[g].nt, f->length[G[g].node], G[g].fold_kv, G[g].fold_cmp);
            W0 += G[g].icf;
        }
    }
    W0 *= H;
    /* evaluate() lists at most two runs per group: its buffers sized once */
    if (vec_reserve_exact(&runs, 2 * NG + 1) || vec_reserve_exact(&rtmp, 2 * NG + 1) ||
        vec_reserve_exact(&lc, 2 * NG + 1) || vec_reserve_exact(&ln, 2 * NG + 1))
        OOM();
    /* Candidates: finer targets first at the full minimum chunk, then (only while no
     * candidate balances) the finest target with the minimum relaxed 2x and 4x. */
    static const double ks[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 32, 32};
    static const int32_t relaxes[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, MAX_RELAX};
    eval_result best = {INFINITY, INFINITY, INFINITY, 0, 0, 0, 0, 0};
#define KEEP_LPT(r) do { \
        vec t_ = cur_seq; cur_seq = best_seq; best_seq = t_; \
        if (vec_reserve_exact(&best_c, (r).nr) || vec_reserve_exact(&best_n, (r).nr)) OOM(); \
        memcpy(best_c.p, lc.p, sizeof(double) * (size_t)(r).nr); \
        memcpy(best_n.p, ln.p, sizeof(int64_t) * (size_t)(r).nr); \
        memcpy(best_load, load, sizeof(double) * (size_t)(r).B); \
    } while (0)
    int have_best = 0;
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        if (relaxes[ki] > 1 && best.imb <= FG_BALANCED_IMBALANCE) break;
        double T = W0 / ((double)in->num_blocks * ks[ki]);
        /* The geometry is a function of (L, rows) here (ic0 is), so it is memoised
         * per candidate, direct mapped: a tree's groups come in DFS order, a few shapes
         * interleaved (a level's node, then its leaves, then the next node), where
         * reusing only the last one recomputed it (divisions, a ceil) at every change. */
        struct geo_memo { int32_t L, rows, size, count; } gm[GEO_MEMO];
        for (int k = 0; k < GEO_MEMO; k++) gm[k].L = -1; /* node lengths are >= 1 */
        for (int64_t g = 0; g < NG; g++) {
            int32_t n = G[g].node;
            if (host[n] >= 0) continue;
            int32_t L = f->length[n], rows = G[g].nt;
            struct geo_memo *e =
                &gm[((uint32_t)L * 0x9E3779B1u ^ (uint32_t)rows * 0x85EBCA77u) >> (32 - GEO_MEMO_BITS)];
            if (e->L == L && e->rows == rows) { G[g].size = e->size; G[g].count = e->count; continue; }
            double whole = G[g].ic0 - cost->task_fixed_us; /* the whole node, less the fixed cost */
            double room = T - cost->task_fixed_us;
            int64_t want = room > 0.0 ? (int64_t)ceil(whole / room) : L;
            int64_t cap = L / min_chunk_m(&c, rows, relaxes[ki]);
            if (want > cap) want = cap;
            if (want > 4096) want = 4096;
            geometry(L, (int32_t)(want < 1 ? 1 : want), cost->tile_kv, &G[g].size, &G[g].count);
            *e = (struct geo_memo){L, rows, G[g].size, G[g].count};
        }
        eval_result r;
        /* The first candidate is the best so far whatever it gives, and the search stops
         * there when it balances within 1.02: a bound that shows this is enough. */
        if (evaluate(&c, f, G, NG, host, &runs, &rtmp, load, &lc, &ln, lpt_scr, &cur_seq,
                     have_best ? 0.0 : 1.02, &r))
            OOM();
#ifdef FG_DIVIDE_DEBUG
        fprintf(stderr, "relax=%d k=%g T=%.3f tasks=%lld mk=%.3f mean=%.3f imb=%.3f step=%.3f\n", relaxes[ki],
                ks[ki], T, (long long)r.tasks, r.mk, r.mean, r.imb, r.step);
#endif
        if (!have_best || better(&r, &best)) {
            have_best = 1;
            best = r;
            if (r.exact) KEEP_LPT(r);
            for (int64_t g = 0; g < NG; g++) { G[g].best_size = G[g].size; G[g].best_count = G[g].count; }
        } else if (best.imb <= FG_BALANCED_IMBALANCE) {
            break; /* finer cuts only add fixed and partial costs from here */
        }
        if (best.imb <= 1.02) break;
        if (r.tasks > (int64_t)64 * in->num_blocks + 4096) break;
    }
    /* Still unbalanced: a few tasks dominate. Cut the (node, row group) with the most
     * expensive chunk once more, keep the cut when the estimate improves, and go on with
     * the next dominant one (bounded: each try is one LPT estimate). */
    if (best.imb > FG_BALANCED_IMBALANCE) /* (only the refinement below reads size, count and tried) */
        for (int64_t g = 0; g < NG; g++) { G[g].size = G[g].best_size; G[g].count = G[g].best_count; G[g].tried = 0; }
    int evals = 0;
    while (evals < 48 && best.imb > FG_BALANCED_IMBALANCE) {
        int64_t pick = -1;
        double worst = 0.0;
        for (int64_t g = 0; g < NG; g++) {
            int32_t n = G[g].node;
            if (host[n] >= 0 || G[g].tried) continue;
            if (G[g].count + 1 > f->length[n] / min_chunk_m(&c, G[g].nt, MAX_RELAX)) continue;
            double cc = item_cost(&c, G[g].nt, G[g].nt, G[g].size, G[g].fold_kv, G[g].fold_cmp);
            if (cc > worst) { worst = cc; pick = g; }
        }
        if (pick < 0) break;
        /* A few more chunks at once may balance where one more does not (tasks = chunks x
         * heads land on the blocks in steps). */
        int32_t os = G[pick].size, oc = G[pick].count, L = f->length[G[pick].node];
        int32_t cap = L / min_chunk_m(&c, G[pick].nt, MAX_RELAX), kept = 0;
        for (int32_t want = oc + 1; want <= cap && want <= 2 * oc + 2 && evals < 48; want++) {
            geometry(L, want, cost->tile_kv, &G[pick].size, &G[pick].count);
            if (G[pick].count <= oc) continue;
            eval_result r;
            if (evaluate(&c, f, G, NG, host, &runs, &rtmp, load, &lc, &ln, lpt_scr, &cur_seq, 0.0, &r)) OOM();
            evals++;
#ifdef FG_DIVIDE_DEBUG
            fprintf(stderr, "refine group %lld -> %d chunks: mk=%.3f imb=%.3f step=%.3f\n", (long long)pick,
                    G[pick].count, r.mk, r.imb, r.step);
#endif
            if (better(&r, &best)) {
                best = r;
                KEEP_LPT(r);
                for (int64_t g = 0; g < NG; g++) { G[g].best_size = G[g].size; G[g].best_count = G[g].count; }
                kept = 1;
                break;
            }
        }
        if (!kept) {
            G[pick].size = os;
            G[pick].count = oc;
            G[pick].tried = 1;
        }
    }

    free(cur_seq.p); /* the estimates are done: give the space back before emitting */
    cur_seq.p = NULL;
    /* 4. Emission, node by node in DFS order, row group by row group, chunk by chunk.
     * Sized once from the chosen geometry (upper bounds: a chunk no token sees is
     * skipped), so the outputs are not grown by doubling. */
    {
        /* A folded node's groups were never given chunks (best_count stays 0), and every
         * fold entry sits on an unfolded group (a node folds into an unfolded host), once:
         * no test per group, no walk of the fold lists. */
        int64_t ni = 0, nrow = 0;
        for (int64_t g = 0; g < NG; g++) {
            ni += G[g].best_count;
            nrow += (int64_t)G[g].best_count * G[g].nt;
        }
        const int64_t nseg = ni + folds.n;
        if (vec_reserve_exact(&seg_off, ni + 1) || vec_reserve_exact(&row_off, ni + 1) ||
            vec_reserve_exact(&row, nrow) || vec_reserve_exact(&seg, nseg))
            OOM();
    }
    {
        const emit_src src = {f, G, NG, host, folds.p, tk, tkr, tkl};
        if (rank_row)
            emit_items_decode(&src, rank_row, R, rank_hits, count, seg_off.p, row_off.p, seg.p, row.p, &seg_off.n,
                              &seg.n, &row.n);
        else
            emit_items(&src, count, seg_off.p, row_off.p, seg.p, row.p, &seg_off.n, &seg.n, &row.n);
        row_off.n = seg_off.n;
    }
    out->num_items = (int32_t)(seg_off.n - 1);
    out->num_ranks = R;
    out->num_segs = (int32_t)seg.n;
    out->num_rows = (int32_t)row.n;
    out->item_cost_us = malloc(sizeof(double) * (size_t)(out->num_items > 0 ? out->num_items : 1));
    if (!out->item_cost_us) OOM();

    /* 5. Exact item costs, now that every token's item count (partial or direct) is known. */
    if (rank_row) {
        /* Decode: an item's rows are consecutive ranks (emit_items_decode copies them so),
         * so its partial rows (tokens in more than one item) are a difference of counts
         * over ranks: partial_below[k] = ranks below k whose token is partial. Built in
         * rank_hits, which emission is done with; one pass over R ranks instead of a
         * lookup per row. */
        int32_t *below = rank_hits;
        /* the running sum in a local: read back from below[], every step would wait on
         * the store before it (below may alias count) */
        int32_t run = 0;
        below[0] = 0;
        for (int32_t rk = 0; rk < R; rk++) below[rk + 1] = run += count[rank_row[rk].qtok] > 1;
    }
    exact_item_costs(&c, out->num_items, seg_off.p, seg.p, row_off.p, row.p, count, rank_row ? rank_hits : NULL,
                     out->item_cost_us);
    out->qtok_items = count; /* the plan's merge lists are sized from it */
    count = NULL;
    out->item_seg_off = seg_off.p;
    out->seg = seg.p;
    out->item_row_off = row_off.p;
    out->row = row.p;
    seg_off.p = seg.p = row_off.p = row.p = NULL;
    if (have_best && best.exact && best.tasks == (int64_t)out->num_items * H) {
        out->lpt = (fg_lpt_hint){best.B, best.nr, best.tasks, best_c.p, best_n.p, best_seq.p, best_load};
        best_c.p = best_n.p = best_seq.p = NULL;
        best_load = NULL;
    }
    st = FG_SUCCESS;
done:
    if (st != FG_SUCCESS) {
        free(out->item_cost_us);
        memset(out, 0, sizeof *out);
    }
    free(seg.p);
    free(row.p);
    free(seg_off.p);
    free(row_off.p);
    free(toks.p);
    free(tlim.p);
    free(grps.p);
    free(folds.p);
    free(runs.p);
    free(rtmp.p);
    free(cur_seq.p);
    free(best_seq.p);
    free(best_c.p);
    free(best_n.p);
    free(best_load);
    free(lc.p);
    free(ln.p);
    free(lpt_scr);
    free(mc_memo);
    free(node_g0); /* with host and unf */
    free(tok_rank_buf);
    free(rank_tok);
    free(count);
    free(solo_req);
    free(load);
    return st;
}
