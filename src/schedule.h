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

#endif /* FG_SCHEDULE_H */
