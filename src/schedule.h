/*
 * Scheduler: assigns tasks to persistent blocks so the predicted makespan is small
 * (longest-processing-time-first or better). Deterministic: ties broken by index.
 */
#ifndef FG_SCHEDULE_H
#define FG_SCHEDULE_H

#include <stdint.h>

#include "forgeattn.h"

/* task_cost_us[num_tasks]; fills block_task_off[num_blocks + 1] and block_task[num_tasks]
 * (each block's tasks in the order it runs them), the predicted makespan and the
 * imbalance (max over mean of block times; 1.0 when perfectly even). */
fg_status fg_schedule(const double *task_cost_us, int32_t num_tasks, int32_t num_blocks,
                      int32_t *block_task_off, int32_t *block_task, double *makespan_us,
                      double *imbalance);

/* An LPT result fg_divide already computed for its chosen division: the run list it gave
 * fg_lpt (costs and counts in fg_lpt's order), the block count, the assignment in run
 * order and the block loads. fg_lpt depends only on the sequence of (cost, total count)
 * classes and the block count, so a scheduler whose classes match may take it as is. */
typedef struct fg_lpt_hint {
    int32_t blocks, num_runs;
    int64_t tasks;
    const double *cost;       /* [num_runs] */
    const int64_t *count;     /* [num_runs] */
    const int32_t *assign;    /* [tasks] */
    const double *load;       /* [blocks] */
} fg_lpt_hint;

/* fg_schedule for tasks in runs of `heads`: task t costs item_cost_us[t / heads] (a plan's
 * tasks are its items times its KV heads). The same bytes as fg_schedule on the expanded
 * costs, without expanding them. */
fg_status fg_schedule_items(const double *item_cost_us, int32_t num_items, int32_t heads, int32_t num_blocks,
                            int32_t *block_task_off, int32_t *block_task, double *makespan_us,
                            double *imbalance);
/* The same, reusing `hint` (may be NULL) in place of the LPT pass when it matches: same
 * bytes either way. */
fg_status fg_schedule_items_hint(const double *item_cost_us, int32_t num_items, int32_t heads,
                                 int32_t num_blocks, const fg_lpt_hint *hint, int32_t *block_task_off,
                                 int32_t *block_task, double *makespan_us, double *imbalance);

/* The LPT core fg_schedule and fg_divide's estimates share. Tasks come as runs of
 * count[k] tasks of cost[k], in non-increasing cost order; each task goes to the block
 * with the least (load, index), exactly as a binary min-heap of blocks would place it.
 * Fills load[num_blocks] (starting from zero) and, when assign is not NULL, assign[i]
 * for the i-th task in run order. scratch: fg_lpt_scratch_ints(num_blocks) ints.
 * By groups of tied blocks when there are few classes for the tasks (O(tasks + classes
 * x groups) with a small constant), else block by block: O(tasks + classes x blocks)
 * when runs of one cost are long, O(tasks log blocks) else. Either way the same bytes. */
int32_t fg_lpt_scratch_ints(int32_t num_blocks);
void fg_lpt(const double *cost, const int64_t *count, int32_t num_runs, int32_t num_blocks,
            double *load, int32_t *assign, int32_t *scratch);

#endif /* FG_SCHEDULE_H */
