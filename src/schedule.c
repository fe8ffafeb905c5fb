/*
 * Scheduler: longest-processing-time-first onto a min-heap of blocks, then a few
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

static int run_cmp(const void *a, const void *b) {
    const run *x = a, *y = b;
    if (x->c != y->c) return x->c > y->c ? -1 : 1;
    return x->first < y->first ? -1 : (x->first > y->first);
}

typedef struct heap { double *load; int32_t *h; int32_t n; } heap;

static int less(const heap *hp, int32_t a, int32_t b) {
    return hp->load[a] < hp->load[b] || (hp->load[a] == hp->load[b] && a < b);
}

static void sift_down(heap *hp, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < hp->n && less(hp, hp->h[l], hp->h[m])) m = l;
        if (r < hp->n && less(hp, hp->h[r], hp->h[m])) m = r;
        if (m == i) return;
        int32_t t = hp->h[i];
        hp->h[i] = hp->h[m];
        hp->h[m] = t;
        i = m;
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
    int64_t budget = 4 * (int64_t)num_tasks + 4 * (int64_t)num_blocks + 4096;
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
    run *runs = malloc(sizeof(run) * (size_t)(num_tasks > 0 ? num_tasks : 1));
    int32_t *assign = malloc(sizeof(int32_t) * (size_t)(num_tasks > 0 ? num_tasks : 1));
    double *load = calloc((size_t)num_blocks, sizeof(double));
    int32_t *hh = malloc(sizeof(int32_t) * (size_t)num_blocks);
    if (!runs || !assign || !load || !hh) {
        st = fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_schedule: out of host memory");
        goto out;
    }
    int32_t nr = 0;
    for (int32_t t = 0; t < num_tasks; t++) {
        if (nr && runs[nr - 1].c == task_cost_us[t]) runs[nr - 1].len++;
        else runs[nr++] = (run){task_cost_us[t], t, 1};
    }
    qsort(runs, (size_t)nr, sizeof(run), run_cmp);

    heap hp = {load, hh, num_blocks};
    for (int32_t b = 0; b < num_blocks; b++) hh[b] = b; /* all zero: already a heap */
    double total = 0.0, biggest = 0.0;
    for (int32_t k = 0; k < nr; k++) {
        for (int32_t t = runs[k].first; t < runs[k].first + runs[k].len; t++) {
            int32_t b = hh[0];
            assign[t] = b;
            load[b] += runs[k].c;
            sift_down(&hp, 0);
        }
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
out:
    free(runs);
    free(assign);
    free(load);
    free(hh);
    return st;
}
