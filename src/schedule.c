/*
 * Scheduler: longest-processing-time-first (fg_lpt: groups of tied blocks when there are
 * few cost classes, else a heap for short runs of one cost and a two-queue merge in
 * O(tasks + blocks) for long ones), then a few
 * improvement passes that move or swap tasks off the most loaded block. Everything is
 * ordered by (cost, index), so equal inputs give equal bytes.
 */
#include "schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sort_desc.h"

/* A run of consecutive tasks with the same cost: plans emit each item's KV heads as
 * such a run, so sorting runs instead of tasks is the same order at 1/heads the work. */
typedef struct run { double c; int32_t first, len; } run;

/* Runs sorted by cost, largest first, stably: runs are built in task order, so this is
 * the (cost descending, first task ascending) order, a total order (src/sort_desc.h). */
FG_DEFINE_SORT_BY_COST_DESC(sort_runs, run)

/* ------------------------------------------------------------------ exact LPT core */

/* Keys are (load, block index): the least key is unique, so any exact priority queue
 * picks the same block as a binary heap would, and the assignment is the same bytes. */
static inline int key_less(const double *load, int32_t a, int32_t b) {
    return load[a] < load[b] || (load[a] == load[b] && a < b);
}

static void heap_down(const double *load, int32_t *h, int32_t n, int32_t i) {
    int32_t x = h[i];
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = -1;
        if (l >= n) break;
        m = l;
        if (r < n && key_less(load, h[r], h[l])) m = r;
        if (!key_less(load, h[m], x)) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = x;
}

/* Sort block ids by key (bottom-up merge sort; tmp holds n ids). */
static void sort_blocks(const double *load, int32_t *ord, int32_t *tmp, int32_t n) {
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = key_less(load, ord[j], ord[i]) ? ord[j++] : ord[i++];
            while (i < mid) tmp[k++] = ord[i++];
            while (j < hi) tmp[k++] = ord[j++];
        }
        memcpy(ord, tmp, sizeof(int32_t) * (size_t)n);
    }
}

/* ord[B], tmp[B], then the queue: 2B + LPT_QPAD entries (ids, then their loads as
 * doubles), so that compacting it (a move of at most B live entries) happens once per
 * B + LPT_QPAD tasks, not every B. */
#define LPT_QPAD 256
/* (lpt_by_groups needs 21 B + 5 LPT_QPAD + 2: see there) */
int32_t fg_lpt_scratch_ints(int32_t num_blocks) {
    const int32_t by_blocks = 4 * num_blocks + LPT_QPAD + 4 + 2 * (2 * num_blocks + LPT_QPAD) + 2;
    const int32_t by_groups = 21 * num_blocks + 5 * LPT_QPAD + 2;
    return by_blocks > by_groups ? by_blocks : by_groups;
}

static void lpt_by_blocks(const double *cost, const int64_t *count, int32_t num_runs, int32_t num_blocks,
                          double *load, int32_t *assign, int32_t *scratch) {
    const int32_t B = num_blocks;
    int32_t *ord = scratch, *tmp = scratch + B, *q = scratch + 2 * B;
    const int32_t qcap = 2 * B + LPT_QPAD;
    double *ql = (double *)(((uintptr_t)(q + qcap) + 7) & ~(uintptr_t)7); /* qcap loads */
    for (int32_t b = 0; b < B; b++) { load[b] = 0.0; ord[b] = b; }
    int sorted = 1; /* ord sorted by key; otherwise a binary heap (a sorted array is both) */
    int64_t at = 0;
    int32_t k = 0;
    while (k < num_runs) {
        /* a class: consecutive runs of one cost */
        const double c = cost[k];
        int64_t n = 0;
        int32_t k1 = k;
        while (k1 < num_runs && cost[k1] == c) n += count[k1++];
        k = k1;
        if (n <= 0) continue;
        if (n < B / 4 || (!sorted && n < B)) {
            /* few tasks: heap operations, O(n log B) */
            for (int64_t i = 0; i < n; i++) {
                int32_t b = ord[0];
                if (assign) assign[at] = b;
                at++;
                load[b] += c;
                heap_down(load, ord, B, 0);
            }
            sorted = 0;
            continue;
        }
        if (!sorted) sort_blocks(load, ord, tmp, B);
        for (;;) {
            /* Whole passes: while the least loaded block plus c is above the most loaded one,
             * every block gets one task before any gets a second, in key order (a block given
             * a task is above every untouched one), so a pass is a plain walk of ord. The
             * order is then checked (rounding can tie two loads) and re-sorted if needed. */
            while (n > 0 && load[ord[0]] + c > load[ord[B - 1]]) {
                const int32_t take = n < B ? (int32_t)n : B;
                for (int32_t j = 0; j < take; j++) {
                    const int32_t b = ord[j];
                    if (assign) assign[at + j] = b;
                    load[b] += c;
                }
                at += take;
                n -= take;
                if (take < B) { /* untouched first, then the ones just given a task */
                    memcpy(tmp, ord + take, sizeof(int32_t) * (size_t)(B - take));
                    memcpy(tmp + (B - take), ord, sizeof(int32_t) * (size_t)take);
                    memcpy(ord, tmp, sizeof(int32_t) * (size_t)B);
                }
                int32_t ok = 1;
                for (int32_t j = 1; j < B && ok; j++) ok = key_less(load, ord[j - 1], ord[j]);
                if (!ok) sort_blocks(load, ord, tmp, B);
            }
            if (n == 0) break;
            /* Many tasks of one cost: the least key is the lesser front of the untouched
             * blocks (sorted) and of the blocks already given a task of this class (kept
             * sorted: a block re-enters with load + c, never below one that left before it,
             * except when rounding ties two loads, which the insertion below orders).
             * q[qh, qt) in a buffer of qcap, with each entry's load beside it in ql (a load
             * does not change while its block waits in the queue or among the untouched, so
             * the comparisons read these copies instead of chasing load[] through ids).
             * Once every block is in the queue and its spread is below c, the rest is whole
             * passes again: the loop hands the queue back as ord. */
            int32_t ai = 0, qh = 0, qt = 0;
            double lu = load[ord[0]];
            int64_t i = 0, next_check = 0;
            int to_passes = 0;
            for (; i < n; i++) {
                if (ai == B && i >= next_check) {
                    if (ql[qh] + c > ql[qt - 1]) { to_passes = 1; break; }
                    next_check = i + B;
                }
                int32_t b;
                double lb;
                if (ai < B && (qh == qt || lu < ql[qh] || (lu == ql[qh] && ord[ai] < q[qh]))) {
                    b = ord[ai++];
                    lb = lu;
                    if (ai < B) lu = load[ord[ai]];
                } else {
                    b = q[qh];
                    lb = ql[qh];
                    qh++;
                }
                if (assign) assign[at] = b;
                at++;
                lb += c;
                load[b] = lb;
                if (qt == qcap) { /* compact: at most B live entries */
                    memmove(q, q + qh, sizeof(int32_t) * (size_t)(qt - qh));
                    memmove(ql, ql + qh, sizeof(double) * (size_t)(qt - qh));
                    qt -= qh;
                    qh = 0;
                }
                int32_t j = qt++;
                while (j > qh && (lb < ql[j - 1] || (lb == ql[j - 1] && b < q[j - 1]))) {
                    q[j] = q[j - 1];
                    ql[j] = ql[j - 1];
                    j--;
                }
                q[j] = b;
                ql[j] = lb;
            }
            if (to_passes) { /* all B blocks are in q[qh, qt), in key order */
                memcpy(ord, q + qh, sizeof(int32_t) * (size_t)B);
                n -= i;
                continue;
            }
            /* merge the untouched rest and the queue back into one sorted order */
            int32_t o = 0;
            int32_t *out = tmp;
            while (ai < B && qh < qt) out[o++] = key_less(load, q[qh], ord[ai]) ? q[qh++] : ord[ai++];
            while (ai < B) out[o++] = ord[ai++];
            while (qh < qt) out[o++] = q[qh++];
            memcpy(ord, out, sizeof(int32_t) * (size_t)B);
            break;
        }
        sorted = 1;
    }
}

/*
 * The same LPT by groups of tied blocks. Blocks of equal load take tasks in index order
 * (the least (load, index) first), and a block given a task of cost c > 0 rises above
 * every block still at its old load; so, within one class of cost c, the least group
 * (v, its blocks by index) hands its first t = min(n, k) blocks the next t tasks in
 * that order, all at once, and they move on together at v + c (the sum fg_lpt forms
 * for each of them). Groups are taken in non-decreasing v, so the new values arrive
 * in order too (rounding is monotone): a FIFO queue beside the sorted groups replaces
 * the per-task priority queue, and equal values meeting are joined by merging their
 * block lists by index. A class costs O(groups + its tasks) with a small constant:
 * batches of a tree repeat costs, so its few classes meet few groups, where the walk
 * per task spent tens of cycles choosing each block. When v + c rounds back to v (or
 * c is 0) the least block keeps the least key: it takes every task of the class.
 *
 * scratch: 21 B + 5 LPT_QPAD + 2 ints: the groups (sorted, a queue of 2 B + LPT_QPAD,
 * the merge's output), then the block lists of each (B, 2 B + LPT_QPAD, B) and a merge
 * buffer (B). The queue is compacted when a push might not fit, once per LPT_QPAD or
 * more ids (few blocks would otherwise compact every other task). Costs must be
 * finite and >= 0 (fg_lpt checks).
 */
typedef struct lgrp { double v; int32_t off, k; } lgrp;

/* dst[0 .. n) = src[0 .. n): a few blocks (a CPU context has one per thread) copy
 * inline, where a memcpy call per pass cost more than the pass */
static inline void copy_ids(int32_t *dst, const int32_t *src, int32_t n) {
    if (n > 8) {
        memcpy(dst, src, sizeof(int32_t) * (size_t)n);
        return;
    }
    switch (n) { /* (a loop here is turned back into a memcpy call) */
    case 8: dst[7] = src[7]; /* fall through */
    case 7: dst[6] = src[6]; /* fall through */
    case 6: dst[5] = src[5]; /* fall through */
    case 5: dst[4] = src[4]; /* fall through */
    case 4: dst[3] = src[3]; /* fall through */
    case 3: dst[2] = src[2]; /* fall through */
    case 2: dst[1] = src[1]; /* fall through */
    case 1: dst[0] = src[0]; /* fall through */
    default: break;
    }
}

/* out[0 .. na + nb) = a and b (ascending block ids, disjoint) merged */
static void merge_ids(const int32_t *a, int32_t na, const int32_t *b, int32_t nb, int32_t *out) {
    int32_t i = 0, j = 0, o = 0;
    while (i < na && j < nb) out[o++] = a[i] < b[j] ? a[i++] : b[j++];
    while (i < na) out[o++] = a[i++];
    while (j < nb) out[o++] = b[j++];
}

static void lpt_by_groups(const double *cost, const int64_t *count, int32_t num_runs, int32_t B, double *load,
                          int32_t *assign, int32_t *scratch) {
    const int32_t qcap = 2 * B + LPT_QPAD;
    lgrp *A = (lgrp *)(((uintptr_t)scratch + 7) & ~(uintptr_t)7), *Q = A + B, *O = Q + qcap;
    int32_t *aid = (int32_t *)(O + B), *qid = aid + B, *oid = qid + qcap, *tmp = oid + B;
    int32_t na = 1;
    A[0] = (lgrp){0.0, 0, B};
    for (int32_t b = 0; b < B; b++) aid[b] = b;
    int64_t at = 0;
    int32_t r = 0;
    while (r < num_runs) {
        const double c = cost[r];
        int64_t n = 0;
        while (r < num_runs && cost[r] == c) n += count[r++]; /* one class, as lpt_by_blocks */
        if (n <= 0) continue;
        int32_t ah = 0, qh = 0, qt = 0, qn = 0; /* queue groups Q[qh, qt), their ids in qid[0, qn) */
        lgrp left = {0.0, 0, 0};                /* the untaken rest of the last group */
        const int32_t *left_ids = NULL;
        while (n > 0) {
            if (qt >= qcap || qn > qcap - B) { /* compact: at most B blocks (and groups) live */
                int32_t o = 0;
                for (int32_t g = qh; g < qt; g++) {
                    memmove(qid + o, qid + Q[g].off, sizeof(int32_t) * (size_t)Q[g].k);
                    Q[g - qh] = (lgrp){Q[g].v, o, Q[g].k};
                    o += Q[g].k;
                }
                qt -= qh;
                qh = 0;
                qn = o;
            }
            lgrp g;
            const int32_t *gid;
            if (ah < na && (qh == qt || A[ah].v <= Q[qh].v)) {
                g = A[ah];
                gid = aid + g.off;
                ah++;
                if (qh < qt && Q[qh].v == g.v) { /* tied: one group, blocks by index */
                    merge_ids(gid, g.k, qid + Q[qh].off, Q[qh].k, tmp);
                    g.k += Q[qh].k;
                    gid = tmp;
                    qh++;
                }
            } else {
                g = Q[qh++];
                gid = qid + g.off;
            }
            if (ah == na && qh == qt) {
                /* every block is in this one group (all tied): whole passes, each giving
                 * every block one task in index order, while a pass fits */
                while (n >= g.k && g.v + c != g.v) {
                    if (assign) copy_ids(assign + at, gid, g.k);
                    at += g.k;
                    n -= g.k;
                    g.v += c;
                }
                if (n == 0) { /* back in the queue as it is */
                    memcpy(qid + qn, gid, sizeof(int32_t) * (size_t)g.k);
                    Q[qt++] = (lgrp){g.v, qn, g.k};
                    qn += g.k;
                    break;
                }
            }
            const double nv = g.v + c;
            if (nv == g.v) { /* its first block stays the least: every task goes there */
                if (assign) for (int64_t i = 0; i < n; i++) assign[at + i] = gid[0];
                at += n;
                n = 0;
                left = g;
                left_ids = gid;
                break;
            }
            const int32_t t = n < g.k ? (int32_t)n : g.k;
            if (assign) copy_ids(assign + at, gid, t);
            at += t;
            n -= t;
            if (t < g.k) { /* the class ends inside this group */
                left = (lgrp){g.v, 0, g.k - t};
                left_ids = gid + t;
            }
            if (qt > qh && Q[qt - 1].v == nv) { /* joins the queue's last group (its ids end qid) */
                lgrp *e = &Q[qt - 1];
                merge_ids(qid + e->off, e->k, gid, t, oid);
                memcpy(qid + e->off, oid, sizeof(int32_t) * (size_t)(e->k + t));
                e->k += t;
                qn += t;
            } else {
                memcpy(qid + qn, gid, sizeof(int32_t) * (size_t)t);
                Q[qt++] = (lgrp){nv, qn, t};
                qn += t;
            }
        }
        /* The groups for the next class, by value: the rest of the last group (below all
         * others), then the untouched groups and the queue merged, ties joined. */
        int32_t no = 0, on = 0;
        if (left.k > 0) {
            memcpy(oid, left_ids, sizeof(int32_t) * (size_t)left.k);
            O[no++] = (lgrp){left.v, 0, left.k};
            on = left.k;
        }
        while (ah < na || qh < qt) {
            if (ah < na && qh < qt && A[ah].v == Q[qh].v) {
                merge_ids(aid + A[ah].off, A[ah].k, qid + Q[qh].off, Q[qh].k, oid + on);
                O[no++] = (lgrp){A[ah].v, on, A[ah].k + Q[qh].k};
                on += A[ah].k + Q[qh].k;
                ah++;
                qh++;
                continue;
            }
            const int from_a = ah < na && (qh == qt || A[ah].v < Q[qh].v);
            const lgrp e = from_a ? A[ah++] : Q[qh++];
            memcpy(oid + on, (from_a ? aid : qid) + e.off, sizeof(int32_t) * (size_t)e.k);
            O[no++] = (lgrp){e.v, on, e.k};
            on += e.k;
        }
        lgrp *tg = A; A = O; O = tg;
        int32_t *ti = aid; aid = oid; oid = ti;
        na = no;
    }
    for (int32_t g = 0; g < na; g++)
        for (int32_t i = 0; i < A[g].k; i++) load[aid[A[g].off + i]] = A[g].v;
}

/* Groups when they can be used (costs finite and >= 0, the task count at least on the
 * order of classes x blocks, so that a class's O(groups) does not exceed its tasks by
 * much), else the walk by blocks. Both give the same bytes. */
void fg_lpt(const double *cost, const int64_t *count, int32_t num_runs, int32_t num_blocks, double *load,
            int32_t *assign, int32_t *scratch) {
    int64_t classes = 0, tasks = 0;
    int ok = 1;
    for (int32_t k = 0; k < num_runs && ok; k++) {
        ok = cost[k] >= 0.0 && isfinite(cost[k]);
        classes += k == 0 || cost[k] != cost[k - 1];
        tasks += count[k] > 0 ? count[k] : 0;
    }
    if (ok && classes * num_blocks <= 4 * tasks + 4 * (int64_t)num_blocks)
        lpt_by_groups(cost, count, num_runs, num_blocks, load, assign, scratch);
    else
        lpt_by_blocks(cost, count, num_runs, num_blocks, load, assign, scratch);
}

/* The improvement passes' budget of pair checks: proportional to the task count, so
 * planning stays in microseconds. Every pass is charged num_blocks at its start, so at
 * most ceil(budget / num_blocks) passes run. */
static int64_t improve_budget(int32_t num_tasks, int32_t num_blocks) {
    return (int64_t)num_tasks + 2 * (int64_t)num_blocks + 1024;
}

/* Improvement: while the most loaded block M can be relieved, move one of its tasks to
 * the least loaded block, or swap one with a cheaper task of another block, whichever
 * lowers the pair's maximum most. Bounded so planning stays in microseconds. Returns 1
 * with counts[b] = the tasks block b ends with (improve keeps them anyway: emission
 * need not count them again), 0 when it could not run (no memory: LPT stands). */
static int improve(const double *cost, int32_t num_tasks, int32_t num_blocks, int32_t *assign,
                   double *load, double lower_bound, int32_t *counts) {
    /* one block: the per-task costs of the most loaded block and of the block under
     * test (mcost, bcost: [num_tasks] doubles each), then head and cnt ([num_blocks]
     * each), next, and the ids beside mcost / bcost ([num_tasks] each). The lists are
     * singly linked: a task leaving a block finds its predecessor by a walk of that
     * (short) list, which costs less than keeping prev links for every task here. */
    const size_t T = (size_t)num_tasks, B = (size_t)num_blocks;
    double *mcost = malloc(sizeof(double) * 2 * T + sizeof(int32_t) * (2 * B + 3 * T));
    if (!mcost) return 0; /* without the memory the LPT schedule stands */
    double *bcost = mcost + T;
    int32_t *head = (int32_t *)(bcost + T), *cnt = head + B, *next = cnt + B;
    int32_t *mid = next + T, *bid = mid + T;
    for (int32_t b = 0; b < num_blocks; b++) { head[b] = -1; cnt[b] = 0; }
    for (int32_t t = num_tasks - 1; t >= 0; t--) {
        int32_t b = assign[t];
        cnt[b]++;
        next[t] = head[b];
        head[b] = t;
    }
    int64_t budget = improve_budget(num_tasks, num_blocks);
    for (int iter = 0; iter < 4 * num_blocks && budget > 0; iter++) {
        int32_t M = 0, m = 0;
        budget -= num_blocks;
        for (int32_t b = 1; b < num_blocks; b++) {
            if (load[b] > load[M]) M = b;
            if (load[b] < load[m]) m = b;
        }
        /* within 1% of a bound no schedule beats: further passes are not worth their time */
        if (load[M] <= lower_bound * 1.01) break;
        const double LM = load[M];
        double best = LM;
        int32_t ba = -1, bc = -1, bb = -1;
        /* M's tasks in list order, gathered once: the scans below read these arrays
         * instead of chasing the list once per candidate partner */
        int32_t nM = 0;
        double mmax = 0.0;
        for (int32_t a = head[M]; a >= 0; a = next[a]) {
            mid[nM] = a;
            mcost[nM++] = cost[a];
            if (cost[a] > mmax) mmax = cost[a];
        }
        for (int32_t i = 0; i < nM; i++) {
            const double x = LM - mcost[i], y = load[m] + mcost[i];
            const double nm = x > y ? x : y; /* fmax on finite values, without the call */
            if (nm < best - 1e-12) { best = nm; ba = mid[i]; bc = -1; bb = m; }
        }
        for (int32_t b = 0; b < num_blocks && budget > 0; b++) {
            if (b == M || load[b] >= LM) continue;
            /* The scan charges the budget one per pair it checks; skipped blocks are
             * charged the same, so the budget runs out exactly where it did. */
            budget -= (int64_t)nM * cnt[b];
            /* A swap leaves the pair's maximum at or above the pair's mean: when that mean
             * is already no better than `best`, no pair of this block can be taken. The
             * factor covers the rounding of the loads, d and the maxima (far below it). */
            if (0.5 * (LM + load[b]) * (1.0 - 1e-14) >= best) continue;
            const double Lb = load[b];
            int32_t nb = 0;
            double bmin = INFINITY;
            for (int32_t c = head[b]; c >= 0; c = next[c]) {
                bid[nb] = c;
                bcost[nb++] = cost[c];
                if (cost[c] < bmin) bmin = cost[c];
            }
            /* nor when even the largest exchange leaves M above `best` (rounding is
             * monotone, so LM - d >= LM - (mmax - bmin) holds for the computed values) */
            if (LM - (mmax - bmin) >= best) continue;
            /* a-major, list order, strict improvement: the first best pair wins, as before */
            for (int32_t i = 0; i < nM; i++) {
                for (int32_t j = 0; j < nb; j++) {
                    const double d = mcost[i] - bcost[j];
                    if (d <= 0.0) continue;
                    const double x = LM - d, y = Lb + d;
                    const double nm = x > y ? x : y;
                    if (nm < best - 1e-12) { best = nm; ba = mid[i]; bc = bid[j]; bb = b; }
                }
            }
        }
        if (ba < 0) break;
        /* unlink a from M (and c from bb), relink crosswise */
        int32_t mv[2] = {ba, bc}, to[2] = {bb, M};
        for (int k = 0; k < 2; k++) {
            int32_t t = mv[k];
            if (t < 0) continue;
            int32_t from = assign[t];
            int32_t *link = &head[from]; /* the link that points at t */
            while (*link != t) link = &next[*link];
            *link = next[t];
            load[from] -= cost[t];
            cnt[from]--;
        }
        for (int k = 0; k < 2; k++) {
            int32_t t = mv[k];
            if (t < 0) continue;
            assign[t] = to[k];
            next[t] = head[to[k]];
            head[to[k]] = t;
            load[to[k]] += cost[t];
            cnt[to[k]]++;
        }
    }
    memcpy(counts, cnt, sizeof(int32_t) * B);
    free(mcost);
    return 1;
}

/* Task t costs unit_cost[t / rep]: fg_schedule has rep = 1, fg_schedule_items one unit
 * per item and rep = its KV heads, so validation and run building touch items, not tasks. */
static fg_status schedule_core(const double *unit_cost, int32_t num_units, int32_t rep, int32_t num_tasks,
                               int32_t num_blocks, const fg_lpt_hint *hint, int32_t *block_task_off,
                               int32_t *block_task, double *makespan_us, double *imbalance);

fg_status fg_schedule(const double *task_cost_us, int32_t num_tasks, int32_t num_blocks,
                      int32_t *block_task_off, int32_t *block_task, double *makespan_us,
                      double *imbalance) {
    return schedule_core(task_cost_us, num_tasks, 1, num_tasks, num_blocks, NULL, block_task_off, block_task,
                         makespan_us, imbalance);
}

fg_status fg_schedule_items_hint(const double *item_cost_us, int32_t num_items, int32_t heads,
                                 int32_t num_blocks, const fg_lpt_hint *hint, int32_t *block_task_off,
                                 int32_t *block_task, double *makespan_us, double *imbalance) {
    if (heads < 1 || num_items < 0 || (int64_t)num_items * heads > INT32_MAX)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_schedule: num_items = %d, heads = %d", num_items, heads);
    return schedule_core(item_cost_us, num_items, heads, num_items * heads, num_blocks, hint, block_task_off,
                         block_task, makespan_us, imbalance);
}

fg_status fg_schedule_items(const double *item_cost_us, int32_t num_items, int32_t heads, int32_t num_blocks,
                            int32_t *block_task_off, int32_t *block_task, double *makespan_us,
                            double *imbalance) {
    return fg_schedule_items_hint(item_cost_us, num_items, heads, num_blocks, NULL, block_task_off, block_task,
                                  makespan_us, imbalance);
}

/* Counting and placing tasks by block go four tasks at a time, each block's counter
 * (or cursor) read once per four: one task at a time, every update waited on the
 * store the previous update of the same counter made, and with few blocks (a CPU
 * context has one per thread) that came every other task. Equal blocks among the four
 * take consecutive values in order, so the results are those of the one-at-a-time
 * loops. */

/* Blocks up to which the four-at-a-time loops pay: with more, consecutive tasks go to
 * different blocks anyway and the plain loops are shorter. */
#define FG_FEW_BLOCKS 32

/* cnt[b] += the occurrences of b in blk[0 .. n) */
static void count_blocks(const int32_t *restrict blk, int32_t n, int32_t num_blocks, int32_t *restrict cnt) {
    int32_t i = 0;
    for (; num_blocks <= FG_FEW_BLOCKS && i + 4 <= n; i += 4) {
        const int32_t b0 = blk[i], b1 = blk[i + 1], b2 = blk[i + 2], b3 = blk[i + 3];
        const int32_t c0 = cnt[b0];
        const int32_t c1 = cnt[b1] + (b1 == b0);
        const int32_t c2 = cnt[b2] + (b2 == b0) + (b2 == b1);
        const int32_t c3 = cnt[b3] + (b3 == b0) + (b3 == b1) + (b3 == b2);
        cnt[b0] = c0 + 1;
        cnt[b1] = c1 + 1;
        cnt[b2] = c2 + 1;
        cnt[b3] = c3 + 1;
    }
    for (; i < n; i++) cnt[blk[i]]++;
}

/* The runs' tasks in run order, each at out[cur[b]++] for its block b: blk[i] for the
 * i-th task in that order (by_run), else blk[task]. */
static void place_tasks(const run *runs, int32_t nr, const int32_t *restrict blk, int by_run, int32_t num_blocks,
                        int32_t *restrict cur, int32_t *restrict out) {
    int32_t at = 0;
    for (int32_t k = 0; k < nr; k++) {
        int32_t t = runs[k].first;
        const int32_t end = t + runs[k].len;
        for (; num_blocks <= FG_FEW_BLOCKS && t + 4 <= end; t += 4, at += 4) {
            const int32_t *s = by_run ? blk + at : blk + t;
            const int32_t b0 = s[0], b1 = s[1], b2 = s[2], b3 = s[3];
            const int32_t p0 = cur[b0];
            const int32_t p1 = cur[b1] + (b1 == b0);
            const int32_t p2 = cur[b2] + (b2 == b0) + (b2 == b1);
            const int32_t p3 = cur[b3] + (b3 == b0) + (b3 == b1) + (b3 == b2);
            out[p0] = t;
            out[p1] = t + 1;
            out[p2] = t + 2;
            out[p3] = t + 3;
            cur[b0] = p0 + 1;
            cur[b1] = p1 + 1;
            cur[b2] = p2 + 1;
            cur[b3] = p3 + 1;
        }
        for (; t < end; t++, at++) out[cur[by_run ? blk[at] : blk[t]]++] = t;
    }
}

/* Blocks up to which emission goes block by block (place_by_passes). */
#define FG_PASS_BLOCKS 4

/* count_blocks, the offsets and place_tasks in one, for a few blocks (a CPU context of a
 * few threads): one pass over the tasks in run order per block, each taking its own
 * tasks in that order with its cursor in a register and a select instead of a branch
 * (with two blocks LPT alternates them, a coin toss to the predictor). The offsets fall
 * out as the cursor after each pass. The same output as the three steps: each block's
 * tasks in run order, the blocks one after the other. */
static void place_by_passes(const run *runs, int32_t nr, const int32_t *restrict blk, int by_run,
                            int32_t num_blocks, int32_t *restrict off, int32_t *restrict out) {
    int32_t pos = 0, sink = 0;
    off[0] = 0;
    for (int32_t b = 0; b < num_blocks; b++) {
        for (int32_t k = 0, at = 0; k < nr; k++) {
            const int32_t end = runs[k].first + runs[k].len;
            for (int32_t t = runs[k].first; t < end; t++, at++) {
                const int take = (by_run ? blk[at] : blk[t]) == b;
                int32_t *d = take ? out + pos : &sink; /* others write the sink */
                *d = t;
                pos += take;
            }
        }
        off[b + 1] = pos;
    }
    (void)sink;
}

/* place_by_passes for two blocks (a CPU context of two threads) in one pass: block 0's
 * tasks start at 0, block 1's after them (a count of the first, vectorised), and each
 * task goes to its block's cursor, picked by a select (LPT alternates the two blocks,
 * a coin toss to the predictor). Half the stores of two passes, each of which wrote
 * every task (to its place or to the sink). The same output. */
static void place_two(const run *runs, int32_t nr, const int32_t *restrict blk, int by_run, int32_t num_tasks,
                      int32_t *restrict off, int32_t *restrict out) {
    int32_t n0 = 0;
    for (int32_t i = 0; i < num_tasks; i++) n0 += blk[i] == 0; /* blk holds every task once */
    int32_t c0 = 0, c1 = n0;
    for (int32_t k = 0, at = 0; k < nr; k++) {
        const int32_t end = runs[k].first + runs[k].len;
        for (int32_t t = runs[k].first; t < end; t++, at++) {
            const int32_t one = (by_run ? blk[at] : blk[t]) != 0;
            out[one ? c1 : c0] = t;
            c1 += one;
            c0 += 1 - one;
        }
    }
    off[0] = 0;
    off[1] = n0;
    off[2] = num_tasks;
}

/* The largest of load[0 .. n) and 0 (loads are finite and >= 0): four maxima side by
 * side, so that each step does not wait on the one before (one running maximum made a
 * chain of compares, hundreds of blocks long on a GPU). Max is exact: the same value
 * in any order. */
static double max_load(const double *load, int32_t n) {
    double m0 = 0.0, m1 = 0.0, m2 = 0.0, m3 = 0.0;
    int32_t b = 0;
    for (; b + 4 <= n; b += 4) {
        m0 = load[b] > m0 ? load[b] : m0;
        m1 = load[b + 1] > m1 ? load[b + 1] : m1;
        m2 = load[b + 2] > m2 ? load[b + 2] : m2;
        m3 = load[b + 3] > m3 ? load[b + 3] : m3;
    }
    for (; b < n; b++) m0 = load[b] > m0 ? load[b] : m0;
    m0 = m1 > m0 ? m1 : m0;
    m2 = m3 > m2 ? m3 : m2;
    return m2 > m0 ? m2 : m0;
}

/* Do two run lists give fg_lpt the same classes (consecutive equal costs summed, empty
 * ones skipped)? */
static int same_classes(const double *ac, const int64_t *an, int32_t na, const double *bc, const int64_t *bn,
                        int32_t nb) {
    int32_t i = 0, j = 0;
    for (;;) {
        while (i < na && an[i] <= 0) i++;
        while (j < nb && bn[j] <= 0) j++;
        if (i == na || j == nb) return i == na && j == nb;
        const double c = ac[i];
        if (bc[j] != c) return 0;
        int64_t x = 0, y = 0;
        while (i < na && ac[i] == c) x += an[i++];
        while (j < nb && bc[j] == c) y += bn[j++];
        if (x != y) return 0;
    }
}

static fg_status schedule_core(const double *task_cost_us, int32_t num_units, int32_t rep, int32_t num_tasks,
                               int32_t num_blocks, const fg_lpt_hint *hint, int32_t *block_task_off,
                               int32_t *block_task, double *makespan_us, double *imbalance) {
    if (num_blocks < 1 || num_tasks < 0)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_schedule: num_tasks = %d, num_blocks = %d "
                       "(need num_tasks >= 0 and num_blocks >= 1)", num_tasks, num_blocks);
    if (!block_task_off || (num_tasks > 0 && (!task_cost_us || !block_task)) || !makespan_us || !imbalance)
        return fg_fail(FG_ERR_NULL_POINTER, "fg_schedule: a NULL argument");
    for (int32_t t = 0; t < num_units; t++)
        if (!(task_cost_us[t] >= 0.0) || !isfinite(task_cost_us[t]))
            return fg_fail(FG_ERR_INVALID_VALUE, "fg_schedule: task_cost_us[%d] = %g (must be finite and >= 0)",
                           t * rep, task_cost_us[t]);

    fg_status st = FG_SUCCESS;
    /* one allocation for everything the scheduler needs */
    size_t T1 = (size_t)(num_tasks > 0 ? num_tasks : 1), B = (size_t)num_blocks;
    size_t U1 = (size_t)(num_units > 0 ? num_units : 1); /* runs: at most one per unit */
    /* the run lists, loads and block cursors; the LPT's assignment and scratch come in a
     * second block only when fg_divide's result cannot be reused, and the per-task
     * assignment only when the improvement passes run (small peaks keep the heap calm) */
    size_t bytes = sizeof(run) * 2 * U1 + sizeof(double) * (U1 + B) + sizeof(int64_t) * U1 +
                   sizeof(int32_t) * B;
    char *arena = malloc(bytes);
    if (!arena) return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_schedule: out of host memory");
    run *runs = (run *)arena;
    run *runs_tmp = runs + U1;
    double *rc = (double *)(runs_tmp + U1);
    double *load = rc + U1;
    int64_t *rn = (int64_t *)(load + B);
    int32_t *hh = (int32_t *)(rn + U1);
    int32_t *assign = NULL, *lpt_buf = NULL;
    const int32_t *seq;
    int32_t nr = 0;
    if (num_units > 0) {
        /* the open run in a local: lengthened in the list, each unit of a run of equal
         * costs waited on the store the one before it made */
        run cur = {task_cost_us[0], 0, rep};
        for (int32_t u = 1; u < num_units; u++) {
            if (task_cost_us[u] == cur.c) {
                cur.len += rep;
            } else {
                runs[nr++] = cur;
                cur = (run){task_cost_us[u], u * rep, rep};
            }
        }
        runs[nr++] = cur;
    }
    sort_runs(runs, runs_tmp, nr);
    rc[0] = 0.0; /* T1 >= 1; keeps GCC's maybe-uninitialized analysis quiet when nr == 0 */
    rn[0] = 0;
    for (int32_t k = 0; k < nr; k++) { rc[k] = runs[k].c; rn[k] = runs[k].len; }
    if (hint && hint->blocks == num_blocks && hint->tasks == num_tasks && hint->num_runs >= 0 &&
        same_classes(rc, rn, nr, hint->cost, hint->count, hint->num_runs)) {
        /* fg_divide ran this very LPT for its estimate: take its result */
        seq = hint->assign;
        memcpy(load, hint->load, sizeof(double) * (size_t)num_blocks);
    } else {
        lpt_buf = malloc(sizeof(int32_t) * (T1 + (size_t)fg_lpt_scratch_ints(num_blocks)));
        if (!lpt_buf) { free(arena); return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_schedule: out of host memory"); }
        fg_lpt(rc, rn, nr, num_blocks, load, lpt_buf, lpt_buf + T1);
        seq = lpt_buf;
    }
    double total = 0.0, biggest = 0.0;
    for (int32_t k = 0; k < nr; k++) {
        total += runs[k].c * runs[k].len;
        if (runs[k].c > biggest) biggest = runs[k].c;
    }
    double mean = total / num_blocks;
    double lower = mean > biggest ? mean : biggest;
    double mk = max_load(load, num_blocks);
    /* LPT within 5% of a bound no schedule beats: the improvement passes cannot win more
     * than that, and they cost more planning time than the rest of the scheduler.
     * Nor can they lower the makespan when more blocks share the maximum load than passes
     * can run: a pass relieves one block of them (the other block of its move or swap ends
     * below the old maximum), so one keeps it. That is common where tasks come in groups
     * of equal cost (an item's KV heads): LPT then ties many blocks at the top (80 of 264
     * for the 256-request tree of forgeattn-calibrate --plan-time), and the passes only
     * moved tasks around (~4.5 us) for the same makespan. */
    int improved = 0, counted = 0; /* counted: block_task_off[1 ..] holds improve's counts */
    int improvable = num_tasks > num_blocks && mk > lower * 1.05;
    if (improvable) {
        const int64_t passes = (improve_budget(num_tasks, num_blocks) + num_blocks - 1) / num_blocks;
        int64_t at_max = 0; /* blocks within a relative 1e-12 of the maximum */
        for (int32_t b = 0; b < num_blocks; b++) at_max += load[b] >= mk * (1.0 - 1e-12);
        improvable = at_max <= passes;
    }
    if (improvable && (assign = malloc(sizeof(int32_t) * T1)) != NULL) {
        improved = 1; /* (without the memory the LPT schedule stands) */
        for (int32_t k = 0, at = 0; k < nr; k++)
            for (int32_t t = runs[k].first; t < runs[k].first + runs[k].len; t++) assign[t] = seq[at++];
        if (rep == 1) {
            counted = improve(task_cost_us, num_tasks, num_blocks, assign, load, lower, block_task_off + 1);
        } else {
            double *tc = malloc(sizeof(double) * (size_t)num_tasks);
            if (tc) { /* without it the LPT schedule stands */
                for (int32_t u = 0, t = 0; u < num_units; u++) /* tc[t] = cost[t / rep], no divides */
                    for (int32_t j = 0; j < rep; j++) tc[t++] = task_cost_us[u];
                counted = improve(tc, num_tasks, num_blocks, assign, load, lower, block_task_off + 1);
                free(tc);
            }
        }
    }

    /* Emit each block's tasks longest first (the run order), ties by index: the
     * improved assignment by task, or the LPT assignment as it came, in run order. */
    if (num_blocks == 2) {
        place_two(runs, nr, improved ? assign : seq, !improved, num_tasks, block_task_off, block_task);
    } else if (num_blocks <= FG_PASS_BLOCKS) {
        place_by_passes(runs, nr, improved ? assign : seq, !improved, num_blocks, block_task_off, block_task);
    } else {
        block_task_off[0] = 0;
        if (!counted) {
            memset(block_task_off + 1, 0, sizeof(int32_t) * (size_t)num_blocks);
            count_blocks(improved ? assign : seq, num_tasks, num_blocks, block_task_off + 1);
        }
        for (int32_t b = 0; b < num_blocks; b++) block_task_off[b + 1] += block_task_off[b];
        memcpy(hh, block_task_off, sizeof(int32_t) * (size_t)num_blocks);
        place_tasks(runs, nr, improved ? assign : seq, !improved, num_blocks, hh, block_task);
    }
    mk = max_load(load, num_blocks);
    *makespan_us = mk;
    *imbalance = mean > 0.0 ? mk / mean : 1.0;
    free(arena);
    free(lpt_buf);
    free(assign);
    return st;
}
