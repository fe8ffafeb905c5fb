/*
 * Task division: turns the prefix forest into work items (KV segments x q-token rows).
 *
 * Contract (tests/plan checks it through results; the lead's plan.c relies on it):
 *  - For every q token (row) and every KV position p below the token's causal limit,
 *    exactly one (item, segment) pair has the token among its rows, covers p, and has
 *    the token's request rank inside the segment's [rank_lo, rank_hi). Items never list
 *    a q token twice, and every q token appears in at least one item.
 *  - Rows are left with slot = -1; the plan assigns partial-state slots afterwards.
 *  - The output depends only on the inputs (deterministic, no clocks, no hashing of pointers).
 */
#ifndef FG_DIVIDE_H
#define FG_DIVIDE_H

#include <stdint.h>

#include "cost_model.h"
#include "forest.h"
#include "schedule.h"
#include "worklist.h"

/* A schedule counts as balanced when its predicted imbalance (the largest block time over
 * the mean) is at most this (issue 3's criterion): fg_divide and fg_pack_short_items both
 * prefer a balanced candidate to an unbalanced one. */
#define FG_BALANCED_IMBALANCE 1.10

typedef struct fg_divide_input {
    const fg_forest *forest;
    int32_t num_requests;
    const int32_t *q_len;     /* [R] */
    const int32_t *kv_len;    /* [R] */
    const int32_t *q_indptr;  /* [R + 1], first q token of each request */
    int32_t group;            /* query heads per KV head */
    int32_t kv_head_count;    /* KV heads in the plan: tasks = items x kv_head_count */
    int32_t head_dim_qk, head_dim_v;
    int32_t q_elem_bytes, kv_elem_bytes;
    int32_t page_size;
    int32_t num_blocks;       /* persistent blocks the schedule will use */
} fg_divide_input;

typedef struct fg_division {
    int32_t num_items, num_segs, num_rows;
    int32_t num_ranks;        /* the forest's requests: every segment has rank_hi <= num_ranks */
    int32_t *item_seg_off;    /* [num_items + 1] */
    fg_seg *seg;              /* [num_segs] */
    int32_t *item_row_off;    /* [num_items + 1] */
    fg_row *row;              /* [num_rows] */
    double *item_cost_us;     /* [num_items]: predicted time of one task (one KV head) */
    int32_t *qtok_items;      /* [num q tokens]: the items listing each q token (packing
                               * merges items but keeps this: a token's rows stay put) */
    /* The LPT estimate of the chosen division (fg_schedule_items_hint reuses it when its
     * classes match); lpt.num_runs = -1 when there is none. Owned by the division. */
    fg_lpt_hint lpt;
} fg_division;

fg_status fg_divide(const fg_divide_input *in, const fg_cost_params *cost, fg_division *out);
void fg_division_free(fg_division *d);
/* Frees only d->lpt (once the scheduler has used it). */
void fg_division_drop_lpt(fg_division *d);
/* Shortest KV chunk fg_divide cuts for a row group of `rows` q tokens: below it the
 * partial states (and fixed task cost) a split adds outweigh its KV (tests use it to
 * tell a task that cannot be split from one that was left too long). */
int32_t fg_divide_min_chunk(const fg_divide_input *in, const fg_cost_params *cost, int32_t rows);

#endif /* FG_DIVIDE_H */
