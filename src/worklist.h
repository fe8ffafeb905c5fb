/*
 * The device-side work list: what fg_plan_upload copies into the workspace and
 * what every backend's kernels walk. Plain C, no GPU header: hip/ includes it too.
 *
 * Vocabulary
 *  - q token ("qtok"): one new query token of one request, numbered across the batch
 *    in request order (the row index of Q and O).
 *  - item: one KV range (a list of segments) applied to a list of q tokens. An item is
 *    planned once and run for every KV head of the plan: task = item * kv_head_count + g.
 *    Inside a task, the query rows are (q token, query head of KV head g): M = rows * group.
 *  - segment: KV positions [kv_begin, kv_end) of one forest node, addressed through the
 *    block table of request src_req (the division's fg_seg) or, in the work list, through
 *    the plan's own page list: position p is in page page[page_base + p / page_size]
 *    (fg_work_seg). Visible to rows whose request's DFS rank lies in [rank_lo, rank_hi)
 *    (every row of a one-segment item; folded short nodes use the range as the per-row
 *    mask).
 *  - slot: one partial state (O normalised by its softmax sum, fp32, and its natural-log
 *    LSE) of one q token for all the plan's query heads. slot == -1: the item covers the
 *    token's whole KV and writes O (and LSE) directly.
 */
#ifndef FG_WORKLIST_H
#define FG_WORKLIST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_seg {
    int32_t src_req;  /* block table used to address the segment's tokens */
    int32_t kv_begin; /* first KV position (within the request's sequence) */
    int32_t kv_end;   /* one past the last */
    int32_t rank_lo;  /* rows whose request rank is in [rank_lo, rank_hi) see this segment */
    int32_t rank_hi;
} fg_seg;

/* A segment as the kernels read it. The work list holds only the pages its segments
 * read, each segment's run of them contiguous: page_base = (where the run starts in the
 * list's page array) - kv_begin / page_size, so the page of position p is
 * page[page_base + p / page_size] (page_base itself may be negative). A shared prefix's
 * pages are copied once per segment, not once per request, and a kernel reaches a page
 * id in one load where it took two (the request's table offset, then the id). */
typedef struct fg_work_seg {
    int32_t page_base;
    int32_t kv_begin;
    int32_t kv_end;
    int32_t rank_lo;
    int32_t rank_hi;
} fg_work_seg;

typedef struct fg_row {
    int32_t qtok;  /* row of Q / O */
    int32_t rank;  /* DFS rank of the token's request (segment visibility) */
    int32_t limit; /* causal limit: sees KV positions < limit */
    int32_t slot;  /* partial-state slot, or -1 to write the output directly */
} fg_row;

/* Byte offsets, from the start of the workspace, of the work list's arrays. Every
 * offset is a multiple of 256. The partial-state area follows the lists. */
typedef struct fg_work_layout {
    int64_t item_seg_off;   /* int32 [num_items + 1] */
    int64_t seg;            /* fg_work_seg [num_segs] */
    int64_t item_row_off;   /* int32 [num_items + 1] */
    int64_t row;            /* fg_row [num_rows] */
    int64_t block_task_off; /* int32 [num_blocks + 1] */
    int64_t block_task;     /* int32 [num_tasks] */
    int64_t page;           /* int32 [num_page_entries]: the pages the segments read (fg_work_seg) */
    int64_t merge_off;      /* int32 [num_qtok + 1]; empty range = written directly */
    int64_t merge_slot;     /* int32 [num_merge_entries], slots in merge order */
    int64_t list_bytes;     /* end of the lists: what fg_plan_upload copies */
    int64_t partial_o;      /* float [num_slots][heads][head_dim_v], heads = kv_head_count*group */
    int64_t partial_lse;    /* float [num_slots][heads] */
    int64_t scratch;        /* backend scratch: CPU per-thread tile buffers; GPU int32 arrival
                             * counters [num_qtok][kv_head_count], zero between runs */
    int64_t scratch_bytes;
    int64_t total;          /* workspace bytes */
} fg_work_layout;

/* Everything a kernel needs for one run: device pointers resolved from the workspace
 * base and the layout, the caller's tensors, and the plan's dimensions. Passed by value. */
typedef struct fg_kernel_args {
    const int32_t *item_seg_off;
    const fg_work_seg *seg;
    const int32_t *item_row_off;
    const fg_row *row;
    const int32_t *block_task_off;
    const int32_t *block_task;
    const int32_t *page;
    const int32_t *merge_off;
    const int32_t *merge_slot;
    float *partial_o;
    float *partial_lse;
    void *scratch;

    const void *q;
    const void *k;
    const void *v;
    void *o;
    float *lse; /* may be NULL */
    int64_t q_stride_token, q_stride_head;
    int64_t k_stride_page, k_stride_token, k_stride_head;
    int64_t v_stride_page, v_stride_token, v_stride_head;
    int64_t o_stride_token, o_stride_head;
    int64_t lse_stride_token, lse_stride_head;

    int32_t num_items;
    int32_t num_tasks;
    int32_t num_blocks;
    int32_t num_qtok;
    int32_t num_slots;
    int32_t max_item_rows;  /* most rows (q tokens) in one item */
    int32_t kv_head_begin;  /* first KV head of the plan */
    int32_t kv_head_count;
    int32_t group;          /* query heads per KV head */
    int32_t head_dim_qk;
    int32_t head_dim_v;
    int32_t page_size;
    int32_t q_dtype;        /* fg_dtype of Q and O */
    int32_t kv_dtype;       /* fg_dtype of K and V */
    float scale;            /* softmax scale (natural base) */
} fg_kernel_args;

#ifdef __cplusplus
}
#endif

#endif /* FG_WORKLIST_H */
