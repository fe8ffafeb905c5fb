/* Merge owners for the GPU's in-pass merge; see merge_owner.h. */
#include <stdlib.h>

#include "internal.h"
#include "merge_owner.h"

fg_status fg_merge_owners(const int32_t *block_task_off, const int32_t *block_task, int32_t num_blocks,
                          int32_t num_tasks, const double *item_cost_us, const int32_t *item_row_off,
                          const fg_row *rows, int32_t num_items, int32_t kv_heads, const int32_t *qtok_items,
                          int32_t num_qtok, int32_t *owner) {
    const int64_t n_own = (int64_t)num_qtok * kv_heads;
    for (int64_t i = 0; i < n_own; i++) owner[i] = -1;
    if (num_tasks <= 0) return FG_SUCCESS;
    /* Per task: predicted finish and position. Keys compare (finish, position). */
    double *fin = malloc(sizeof(double) * (size_t)num_tasks);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)num_tasks);
    if (!fin || !pos) {
        free(fin);
        free(pos);
        return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_plan_create: out of host memory");
    }
    for (int32_t b = 0; b < num_blocks; b++) {
        double t = 0.0;
        for (int32_t i = block_task_off[b]; i < block_task_off[b + 1]; i++) {
            const int32_t task = block_task[i];
            t += item_cost_us[task / kv_heads];
            fin[task] = t;
            pos[task] = i;
        }
    }
    for (int32_t it = 0; it < num_items; it++)
        for (int32_t r = item_row_off[it]; r < item_row_off[it + 1]; r++) {
            const int32_t q = rows[r].qtok;
            if (qtok_items[q] < 2) continue;
            int32_t *ow = owner + (int64_t)q * kv_heads;
            for (int32_t g = 0; g < kv_heads; g++) {
                const int32_t t = it * kv_heads + g, c = ow[g];
                if (c < 0 || fin[t] > fin[c] || (fin[t] == fin[c] && pos[t] > pos[c])) ow[g] = t;
            }
        }
    free(fin);
    free(pos);
    return FG_SUCCESS;
}
