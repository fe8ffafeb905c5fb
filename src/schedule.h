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

/* The LPT core fg_schedule and fg_divide's estimates share. Tasks come as runs of
 * count[k] tasks of cost[k], in non-increasing cost order; each task goes to the block
 * with the least (load, index), exactly as a binary min-heap of blocks would place it.
 * Fills load[num_blocks] (starting from zero) and, when assign is not NULL, assign[i]
 * for the i-th task in run order. scratch: fg_lpt_scratch_ints(num_blocks) ints.
 * O(tasks + classes x blocks) when runs of one cost are long, O(tasks log blocks) else. */
int32_t fg_lpt_scratch_ints(int32_t num_blocks);
void fg_lpt(const double *cost, const int64_t *count, int32_t num_runs, int32_t num_blocks,
            double *load, int32_t *assign, int32_t *scratch);

#endif /* FG_SCHEDULE_H */
