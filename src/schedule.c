/*
 * Scheduler: longest-processing-time-first (fg_lpt: a heap for short runs of one cost,
 * a two-queue merge in O(tasks + blocks) for long ones), then a few
 * improvement passes that move or swap tasks off the most loaded block. Everything is
 * ordered by (cost, index), so equal inputs give equal bytes.
 */
#include "schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A run of consecutive tasks with the same cost: plans emit each item's KV heads as
 * such a run, so sorting runs instead of tasks is the same order at 1/heads the work. */
typedef struct run { double c; int32_t first, len; } run;

/* Stable sort of runs by cost, largest first: runs are built in task order, so this is
 * the (cost descending, first task ascending) order, a total order. Insertion sort on
 * short stretches, then bottom-up merges through tmp[n]; no callbacks. */
static void sort_runs(run *a, run *tmp, int32_t n) {
    const int32_t S = 16;
    for (int32_t lo = 0; lo < n; lo += S) {
        int32_t hi = lo + S < n ? lo + S : n;
        for (int32_t i = lo + 1; i < hi; i++) {
            run x = a[i];
            int32_t j = i;
            while (j > lo && a[j - 1].c < x.c) { a[j] = a[j - 1]; j--; }
            a[j] = x;
        }
    }
    run *src = a, *dst = tmp;
    for (int32_t w = S; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, k = lo;
            if (mid < hi && !(src[mid - 1].c < src[mid].c)) { /* already in order */
                memcpy(dst + lo, src + lo, sizeof(run) * (size_t)(hi - lo));
                continue;
            }
            while (i < mid && j < hi) dst[k++] = src[i].c < src[j].c ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        run *t = src; src = dst; dst = t;
    }
    if (src != a) memcpy(a, src, sizeof(run) * (size_t)n);
}

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

/* ord[B], tmp[B], then the queue: 2B + LPT_QPAD entries, so that compacting it (a move
 * of at most B live entries) happens once per B + LPT_QPAD tasks, not every B. */
#define LPT_QPAD 1024
int32_t fg_lpt_scratch_ints(int32_t num_blocks) { return 4 * num_blocks + LPT_QPAD + 4; }

void fg_lpt(const double *cost, const int64_t *count, int32_t num_runs, int32_t num_blocks,
            double *load, int32_t *assign, int32_t *scratch) {
    const int32_t B = num_blocks;
    int32_t *ord = scratch, *tmp = scratch + B, *q = scratch + 2 * B;
    const int32_t qcap = 2 * B + LPT_QPAD;
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
        /* Many tasks of one cost: the least key is the lesser front of the untouched
         * blocks (sorted) and of the blocks already given a task of this class (kept
         * sorted: a block re-enters with load + c, never below one that left before it,
         * except when rounding ties two loads, which the insertion below orders). */
        int32_t ai = 0, qh = 0, qt = 0; /* q[qh, qt) in a buffer of qcap */
        for (int64_t i = 0; i < n; i++) {
            int32_t b;
            if (ai < B && (qh == qt || key_less(load, ord[ai], q[qh]))) b = ord[ai++];
            else b = q[qh++];
            if (assign) assign[at] = b;
            at++;
            load[b] += c;
            if (qt == qcap) { /* compact: at most B live entries */
                memmove(q, q + qh, sizeof(int32_t) * (size_t)(qt - qh));
                qt -= qh;
                qh = 0;
            }
            int32_t j = qt++;
            while (j > qh && key_less(load, b, q[j - 1])) { q[j] = q[j - 1]; j--; }
            q[j] = b;
        }
        /* merge the untouched rest and the queue back into one sorted order */
        int32_t o = 0;
        int32_t *out = tmp;
        while (ai < B && qh < qt) out[o++] = key_less(load, q[qh], ord[ai]) ? q[qh++] : ord[ai++];
        while (ai < B) out[o++] = ord[ai++];
        while (qh < qt) out[o++] = q[qh++];
        memcpy(ord, out, sizeof(int32_t) * (size_t)B);
        sorted = 1;
    }
}

/* Improvement: while the most loaded block M can be relieved, move one of its tasks to
 * the least loaded block, or swap one with a cheaper task of another block, whichever
 * lowers the pair's maximum most. Bounded so planning stays in microseconds. */
static void improve(const double *cost, int32_t num_tasks, int32_t num_blocks, int32_t *assign,
                    double *load, double lower_bound) {
    int32_t *head = malloc(sizeof(int32_t) * (size_t)num_blocks);
    int32_t *next = malloc(sizeof(int32_t) * (size_t)num_tasks);
    int32_t *prev = malloc(sizeof(int32_t) * (size_t)num_tasks);
    if (!head || !next || !prev) goto done;
    for (int32_t b = 0; b < num_blocks; b++) head[b] = -1;
    for (int32_t t = num_tasks - 1; t >= 0; t--) {
        int32_t b = assign[t];
        next[t] = head[b];
        prev[t] = -1;
        if (head[b] >= 0) prev[head[b]] = t;
        head[b] = t;
    }
    /* pair checks: proportional to the task count, so planning stays in microseconds */
    int64_t budget = (int64_t)num_tasks + 2 * (int64_t)num_blocks + 1024;
    for (int iter = 0; iter < 4 * num_blocks && budget > 0; iter++) {
        int32_t M = 0, m = 0;
        budget -= num_blocks;
        for (int32_t b = 1; b < num_blocks; b++) {
            if (load[b] > load[M]) M = b;
            if (load[b] < load[m]) m = b;
        }
        /* within 1% of a bound no schedule beats: further passes are not worth their time */
        if (load[M] <= lower_bound * 1.01) break;
        double best = load[M];
        int32_t ba = -1, bc = -1, bb = -1;
        for (int32_t a = head[M]; a >= 0; a = next[a]) {
            double nm = fmax(load[M] - cost[a], load[m] + cost[a]);
            if (nm < best - 1e-12) { best = nm; ba = a; bc = -1; bb = m; }
        }
        for (int32_t b = 0; b < num_blocks && budget > 0; b++) {
            if (b == M || load[b] >= load[M]) continue;
            for (int32_t a = head[M]; a >= 0; a = next[a]) {
                for (int32_t c = head[b]; c >= 0; c = next[c]) {
                    budget--;
                    double d = cost[a] - cost[c];
                    if (d <= 0.0) continue;
                    double nm = fmax(load[M] - d, load[b] + d);
                    if (nm < best - 1e-12) { best = nm; ba = a; bc = c; bb = b; }
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
            if (prev[t] >= 0) next[prev[t]] = next[t]; else head[from] = next[t];
            if (next[t] >= 0) prev[next[t]] = prev[t];
            load[from] -= cost[t];
        }
        for (int k = 0; k < 2; k++) {
            int32_t t = mv[k];
            if (t < 0) continue;
            assign[t] = to[k];
            next[t] = head[to[k]];
            prev[t] = -1;
            if (head[to[k]] >= 0) prev[head[to[k]]] = t;
            head[to[k]] = t;
            load[to[k]] += cost[t];
        }
    }
done:
    free(head);
    free(next);
    free(prev);
}

fg_status fg_schedule(const double *task_cost_us, int32_t num_tasks, int32_t num_blocks,
                      int32_t *block_task_off, int32_t *block_task, double *makespan_us,
                      double *imbalance) {
    if (num_blocks < 1 || num_tasks < 0)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_schedule: num_tasks = %d, num_blocks = %d "
                       "(need num_tasks >= 0 and num_blocks >= 1)", num_tasks, num_blocks);
    if (!block_task_off || (num_tasks > 0 && (!task_cost_us || !block_task)) || !makespan_us || !imbalance)
        return fg_fail(FG_ERR_NULL_POINTER, "fg_schedule: a NULL argument");
    for (int32_t t = 0; t < num_tasks; t++)
        if (!(task_cost_us[t] >= 0.0) || !isfinite(task_cost_us[t]))
            return fg_fail(FG_ERR_INVALID_VALUE, "fg_schedule: task_cost_us[%d] = %g (must be finite and >= 0)",
                           t, task_cost_us[t]);

    fg_status st = FG_SUCCESS;
    /* one allocation for everything the scheduler needs */
    size_t T1 = (size_t)(num_tasks > 0 ? num_tasks : 1), B = (size_t)num_blocks;
    size_t bytes = sizeof(run) * 2 * T1 + sizeof(double) * (T1 + B) + sizeof(int64_t) * T1 +
                   sizeof(int32_t) * (2 * T1 + B + (size_t)fg_lpt_scratch_ints(num_blocks));
    char *arena = malloc(bytes);
    if (!arena) return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_schedule: out of host memory");
    run *runs = (run *)arena;
    run *runs_tmp = runs + T1;
    double *rc = (double *)(runs_tmp + T1);
    double *load = rc + T1;
    int64_t *rn = (int64_t *)(load + B);
    int32_t *assign = (int32_t *)(rn + T1);
    int32_t *seq = assign + T1;
    int32_t *hh = seq + T1;
    int32_t *scr = hh + B;
    int32_t nr = 0;
    for (int32_t t = 0; t < num_tasks; t++) {
        if (nr && runs[nr - 1].c == task_cost_us[t]) runs[nr - 1].len++;
        else runs[nr++] = (run){task_cost_us[t], t, 1};
    }
    sort_runs(runs, runs_tmp, nr);
    rc[0] = 0.0; /* T1 >= 1; keeps GCC's maybe-uninitialized analysis quiet when nr == 0 */
    rn[0] = 0;
    for (int32_t k = 0; k < nr; k++) { rc[k] = runs[k].c; rn[k] = runs[k].len; }
    fg_lpt(rc, rn, nr, num_blocks, load, seq, scr);
    for (int32_t k = 0, at = 0; k < nr; k++)
        for (int32_t t = runs[k].first; t < runs[k].first + runs[k].len; t++) assign[t] = seq[at++];
    double total = 0.0, biggest = 0.0;
    for (int32_t k = 0; k < nr; k++) {
        total += runs[k].c * runs[k].len;
        if (runs[k].c > biggest) biggest = runs[k].c;
    }
    double mean = total / num_blocks;
    double lower = mean > biggest ? mean : biggest;
    double mk = 0.0;
    for (int32_t b = 0; b < num_blocks; b++) mk = load[b] > mk ? load[b] : mk;
    if (num_tasks > num_blocks && mk > lower * 1.005)
        improve(task_cost_us, num_tasks, num_blocks, assign, load, lower);

    /* Emit each block's tasks longest first (the run order), ties by index. */
    memset(block_task_off, 0, sizeof(int32_t) * (size_t)(num_blocks + 1));
    for (int32_t t = 0; t < num_tasks; t++) block_task_off[assign[t] + 1]++;
    for (int32_t b = 0; b < num_blocks; b++) block_task_off[b + 1] += block_task_off[b];
    memcpy(hh, block_task_off, sizeof(int32_t) * (size_t)num_blocks);
    for (int32_t k = 0; k < nr; k++)
        for (int32_t t = runs[k].first; t < runs[k].first + runs[k].len; t++)
            block_task[hh[assign[t]]++] = t;
    mk = 0.0;
    for (int32_t b = 0; b < num_blocks; b++) mk = load[b] > mk ? load[b] : mk;
    *makespan_us = mk;
    *imbalance = mean > 0.0 ? mk / mean : 1.0;
    free(arena);
    return st;
}
