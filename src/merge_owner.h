/*
 * Merge owners: for the GPU kernels' in-pass merge (hip/attention.hip, inpass_merge).
 * A q token covered by several items has one partial state per (item, KV head); instead
 * of a separate merge kernel after the partial pass (a dependent grid that waits for the
 * slowest block: 6-11 us per step on the H100, perf/NOTES-gpu.md), one of the tasks that
 * write a token's states for KV head g merges them: its owner. The owner is the task the
 * schedule predicts to finish last, so it rarely waits for the others.
 */
#ifndef FG_MERGE_OWNER_H
#define FG_MERGE_OWNER_H

#include <stdint.h>

#include "forgeattn.h"
#include "worklist.h"

/* owner[q * kv_heads + g] = the task (item * kv_heads + g) that merges q token q's partial
 * states for KV head g, or -1 when q is covered by one item (nothing to merge).
 * The owner is the token's task with the largest key (predicted finish, position in
 * block_task): a block's tasks run in list order and their predicted finish times
 * grow along the list, so keys grow along every block's list, and every task an owner
 * waits for has a smaller key. With every block resident, the unfinished task of least
 * key can therefore always run to its end: no cycle of waits, whatever the real times.
 * item_cost_us[i] is the predicted time of one task of item i. */
fg_status fg_merge_owners(const int32_t *block_task_off, const int32_t *block_task, int32_t num_blocks,
                          int32_t num_tasks, const double *item_cost_us, const int32_t *item_row_off,
                          const fg_row *rows, int32_t num_items, int32_t kv_heads, const int32_t *qtok_items,
                          int32_t num_qtok, int32_t *owner);

#endif /* FG_MERGE_OWNER_H */
