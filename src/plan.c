/*
 * Plans: validation of the descriptors, the prefix forest, task division, the sharing
 * decision, partial-state slots and merge lists, the schedule, and the host image of
 * the work list. Then upload and run.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "divide.h"
#include "internal.h"
#include "pack.h"
#include "schedule.h"

#define FG_MAX_HEAD_DIM 256
#define FG_MAX_PAGE_SIZE 65536
#define FG_MAX_HEADS 65536

/* ------------------------------------------------------------ validation */

static fg_status validate_attn(fg_context ctx, const fg_attn_desc *a) {
    if (a->num_q_heads < 1 || a->num_q_heads > FG_MAX_HEADS)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: attn->num_q_heads = %d is outside 1..%d",
                       a->num_q_heads, FG_MAX_HEADS);
    if (a->num_kv_heads < 1 || a->num_kv_heads > FG_MAX_HEADS)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: attn->num_kv_heads = %d is outside 1..%d",
                       a->num_kv_heads, FG_MAX_HEADS);
    if (a->num_q_heads % a->num_kv_heads != 0)
        return fg_fail(FG_ERR_SHAPE_MISMATCH,
                       "fg_plan_create: attn->num_q_heads = %d is not a multiple of attn->num_kv_heads = %d",
                       a->num_q_heads, a->num_kv_heads);
    if ((int)a->layout < (int)FG_LAYOUT_MHA || (int)a->layout > (int)FG_LAYOUT_GLA)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: attn->layout = %d is not an fg_layout (0..5)",
                       (int)a->layout);
    if (a->layout == FG_LAYOUT_GTA || a->layout == FG_LAYOUT_MLA || a->layout == FG_LAYOUT_GLA)
        return fg_fail(FG_ERR_UNSUPPORTED,
                       "fg_plan_create: attn->layout = %s is not supported yet (MHA, GQA and MQA are)",
                       a->layout == FG_LAYOUT_GTA ? "FG_LAYOUT_GTA"
                       : a->layout == FG_LAYOUT_MLA ? "FG_LAYOUT_MLA" : "FG_LAYOUT_GLA");
    if (a->layout == FG_LAYOUT_MHA && a->num_q_heads != a->num_kv_heads)
        return fg_fail(FG_ERR_SHAPE_MISMATCH,
                       "fg_plan_create: attn->layout = FG_LAYOUT_MHA needs num_q_heads == num_kv_heads, got %d and %d",
                       a->num_q_heads, a->num_kv_heads);
    if (a->layout == FG_LAYOUT_MQA && a->num_kv_heads != 1)
        return fg_fail(FG_ERR_SHAPE_MISMATCH,
                       "fg_plan_create: attn->layout = FG_LAYOUT_MQA needs num_kv_heads == 1, got %d",
                       a->num_kv_heads);
    if (a->kv_head_begin < 0 || a->kv_head_begin >= a->num_kv_heads)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: attn->kv_head_begin = %d is outside 0..%d",
                       a->kv_head_begin, a->num_kv_heads - 1);
    if (a->kv_head_count < 0)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: attn->kv_head_count = %d is negative (0 = all)",
                       a->kv_head_count);
    if (a->kv_head_count > a->num_kv_heads - a->kv_head_begin)
        return fg_fail(FG_ERR_SHAPE_MISMATCH,
                       "fg_plan_create: attn->kv_head_count = %d with kv_head_begin = %d exceeds num_kv_heads = %d",
                       a->kv_head_count, a->kv_head_begin, a->num_kv_heads);
    if (a->head_dim_qk < 8 || a->head_dim_qk > FG_MAX_HEAD_DIM || a->head_dim_qk % 8)
        return fg_fail(FG_ERR_INVALID_VALUE,
                       "fg_plan_create: attn->head_dim_qk = %d is not a multiple of 8 in 8..%d",
                       a->head_dim_qk, FG_MAX_HEAD_DIM);
    if (a->head_dim_v < 8 || a->head_dim_v > FG_MAX_HEAD_DIM || a->head_dim_v % 8)
        return fg_fail(FG_ERR_INVALID_VALUE,
                       "fg_plan_create: attn->head_dim_v = %d is not a multiple of 8 in 8..%d",
                       a->head_dim_v, FG_MAX_HEAD_DIM);
    if ((int)a->q_dtype < 0 || (int)a->q_dtype > (int)FG_DTYPE_BF16)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: attn->q_dtype = %d is not an fg_dtype (0..2)",
                       (int)a->q_dtype);
    if ((int)a->kv_dtype < 0 || (int)a->kv_dtype > (int)FG_DTYPE_BF16)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: attn->kv_dtype = %d is not an fg_dtype (0..2)",
                       (int)a->kv_dtype);
    if (a->page_size < 1 || a->page_size > FG_MAX_PAGE_SIZE)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: attn->page_size = %d is outside 1..%d",
                       a->page_size, FG_MAX_PAGE_SIZE);
    if (!isfinite(a->scale))
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: attn->scale = %g is not finite", (double)a->scale);
    if (ctx->gpu) {
        char msg[256] = "";
        fg_status st = ctx->gpu->supports(ctx->gpu_state, a, msg, sizeof msg);
        if (st != FG_SUCCESS) return fg_fail(st, "fg_plan_create: %s", msg);
    }
    return FG_SUCCESS;
}

/* The page range check of requests [0, r_end): FG_ERR_PAGE_OUT_OF_RANGE naming the first
 * bad index (index order is request order: page_indptr is checked non-decreasing from 0
 * before this runs). fg_plan_create does not scan the page ids up front: a successful
 * plan checks the ids it copies into the work list, which covers them all (see
 * build_work_list; explicit trees get this full scan there), and every earlier failure
 * runs this first, so a bad page is reported exactly where the up-front scan would have
 * reported it. Branch-free (vectorisable); the slow scan only names it. */
static fg_status check_pages(const fg_batch_desc *b, int32_t r_end) {
    const int64_t n = b->page_indptr[r_end];
    const uint32_t np = (uint32_t)b->num_pages;
    const int32_t *pg = b->page_indices;
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (uint32_t)pg[i] >= np;
    if (!bad) return FG_SUCCESS;
    int64_t i = 0;
    while ((uint32_t)pg[i] < np) i++;
    int32_t r = 0;
    while (b->page_indptr[r + 1] <= i) r++;
    return fg_fail(FG_ERR_PAGE_OUT_OF_RANGE,
                   "fg_plan_create: batch->page_indices[%lld] = %d (request %d) is outside 0..%d",
                   (long long)i, pg[i], r, b->num_pages - 1);
}

/* An error found after validate_batch: a bad page id, which the up-front check would have
 * reported first, takes precedence. */
static fg_status pages_first(const fg_batch_desc *b, fg_status st) {
    if (st == FG_SUCCESS || st == FG_ERR_PAGE_OUT_OF_RANGE) return st;
    fg_status pst = check_pages(b, b->num_requests);
    return pst != FG_SUCCESS ? pst : st;
}

static fg_status validate_batch(const fg_batch_desc *b, int32_t page_size, int32_t *num_qtok) {
    if (b->num_requests < 1 || b->num_requests > (INT32_MAX - 2) / 2)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: batch->num_requests = %d is outside 1..%d",
                       b->num_requests, (INT32_MAX - 2) / 2);
    if (!b->q_len) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_create: batch->q_len is NULL");
    if (!b->kv_len) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_create: batch->kv_len is NULL");
    if (!b->page_indptr) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_create: batch->page_indptr is NULL");
    if (!b->page_indices) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_create: batch->page_indices is NULL");
    if (b->num_pages < 1)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: batch->num_pages = %d is not >= 1", b->num_pages);
    if (b->flags & ~(FG_BATCH_NO_SHARING | FG_BATCH_FORCE_SHARING))
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: batch->flags = 0x%x has unknown bits",
                       (unsigned)b->flags);
    if ((b->flags & FG_BATCH_NO_SHARING) && (b->flags & FG_BATCH_FORCE_SHARING))
        return fg_fail(FG_ERR_INVALID_VALUE,
                       "fg_plan_create: batch->flags has both FG_BATCH_NO_SHARING and FG_BATCH_FORCE_SHARING");
    if (b->page_indptr[0] != 0)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_create: batch->page_indptr[0] = %d is not 0",
                       b->page_indptr[0]);
    int64_t q_total = 0;
    /* an error at request r: a bad page id in an earlier request is reported first */
#define FAIL_AT(...)                                                      \
    do {                                                                  \
        fg_status e_ = fg_fail(__VA_ARGS__), p_ = check_pages(b, r);      \
        return p_ != FG_SUCCESS ? p_ : e_;                                \
    } while (0)
    for (int32_t r = 0; r < b->num_requests; r++) {
        int32_t q = b->q_len[r], kv = b->kv_len[r];
        if (q < 1)
            FAIL_AT(FG_ERR_INVALID_VALUE, "fg_plan_create: batch->q_len[%d] = %d is not >= 1", r, q);
        if (kv < q)
            FAIL_AT(FG_ERR_SHAPE_MISMATCH,
                           "fg_plan_create: batch->kv_len[%d] = %d is smaller than q_len[%d] = %d (the new "
                           "tokens are part of the KV)", r, kv, r, q);
        q_total += q;
        if (q_total > INT32_MAX / 2)
            FAIL_AT(FG_ERR_OVERFLOW,
                           "fg_plan_create: batch->q_len sums past %d query tokens at request %d",
                           INT32_MAX / 2, r);
        int64_t lo = b->page_indptr[r], hi = b->page_indptr[r + 1];
        if (hi < lo)
            FAIL_AT(FG_ERR_INVALID_VALUE,
                           "fg_plan_create: batch->page_indptr[%d] = %lld is below page_indptr[%d] = %lld",
                           r + 1, (long long)hi, r, (long long)lo);
        /* hi - lo == ceil(kv / page_size) exactly when (hi - lo - 1) x page_size < kv <=
         * (hi - lo) x page_size (kv >= 1): two multiplies, no divide per request (the
         * divide was a visible share of the whole check); the count is divided out only
         * for the message. hi - lo < 2^32 and page_size <= 65536: no overflow. */
        const int64_t np = hi - lo;
        if (np < 1 || (np - 1) * page_size >= kv || np * page_size < kv) {
            int64_t need = ((int64_t)kv + page_size - 1) / page_size;
            FAIL_AT(FG_ERR_SHAPE_MISMATCH,
                           "fg_plan_create: request %d lists %lld pages (page_indptr) but kv_len[%d] = %d "
                           "needs %lld of %d tokens", r, (long long)(hi - lo), r, kv, (long long)need, page_size);
        }
    }
#undef FAIL_AT
    *num_qtok = (int32_t)q_total;
    return FG_SUCCESS;
}

/* ------------------------------------------------------------ planning */

/* A candidate plan (shared or not): its forest, division, schedule and prediction. */
typedef struct candidate {
    fg_forest forest;
    fg_division div;
    int32_t num_blocks, num_tasks, num_slots, num_merge, max_item_rows;
    int32_t *merge_off;     /* [num_qtok + 1] (build_work_list uses it up as its cursors) */
    int32_t *block_task_off, *block_task;
    double makespan_us, imbalance, predicted_us;
} candidate;

static void candidate_free(candidate *c) {
    fg_forest_free(&c->forest);
    fg_division_free(&c->div);
    free(c->merge_off);
    free(c->block_task_off);
    free(c->block_task);
    memset(c, 0, sizeof *c);
}

/* Slots: a q token covered by one item writes its output directly; otherwise every
 * (item, token) gets a slot, and the token's merge list holds its slots in item order.
 * Here only the merge lists' offsets (both candidates need the counts for their
 * predictions); the rows of the chosen one get their slots as build_work_list copies
 * them, and slot s is merge list entry s (merge_slot is the identity). */
static fg_status assign_slots(candidate *c, int32_t num_qtok) {
    const int32_t *count = c->div.qtok_items; /* fg_divide counted the rows of each token */
    c->merge_off = malloc(sizeof(int32_t) * ((size_t)num_qtok + 1));
    if (!c->merge_off) return FG_ERR_OUT_OF_MEMORY;
    int64_t merge = 0;
    for (int32_t q = 0; q < num_qtok; q++) {
        if (count[q] == 0) return fg_fail(FG_ERR_INTERNAL, "fg_plan_create: division left query token %d uncovered", q);
        c->merge_off[q] = (int32_t)merge;
        if (count[q] > 1) merge += count[q];
    }
    c->merge_off[num_qtok] = (int32_t)merge;
    c->num_merge = (int32_t)merge;
    c->num_slots = (int32_t)merge;
    return FG_SUCCESS;
}

static fg_status build_candidate(fg_context ctx, const fg_attn_desc *a, int32_t group,
                                 const fg_batch_desc *b, const int32_t *q_indptr, int32_t num_qtok,
                                 int no_sharing, candidate *c) {
    memset(c, 0, sizeof *c);
    fg_status st = (!no_sharing && b->tree) ? fg_forest_from_tree(b, &c->forest)
                                            : fg_forest_from_block_tables(b, a->page_size, no_sharing, &c->forest);
    if (st != FG_SUCCESS) return st;
    const fg_cost_params *cost = &ctx->cost;
    int32_t max_blocks = ctx->gpu ? cost->compute_units * (cost->blocks_per_unit > 0 ? cost->blocks_per_unit : 1)
                                  : ctx->num_threads;
    if (max_blocks < 1) max_blocks = 1;
    fg_divide_input in = {
        .forest = &c->forest, .num_requests = b->num_requests, .q_len = b->q_len, .kv_len = b->kv_len,
        .q_indptr = q_indptr, .group = group, .kv_head_count = a->kv_head_count,
        .head_dim_qk = a->head_dim_qk, .head_dim_v = a->head_dim_v,
        .q_elem_bytes = fg_dtype_size(a->q_dtype), .kv_elem_bytes = fg_dtype_size(a->kv_dtype),
        .page_size = a->page_size, .num_blocks = max_blocks};
    st = fg_divide(&in, cost, &c->div);
    if (st != FG_SUCCESS) { candidate_free(c); return st; }
    {
        fg_cost_shape sh = {group, a->head_dim_qk, a->head_dim_v, fg_dtype_size(a->q_dtype),
                            fg_dtype_size(a->kv_dtype), a->page_size};
        int32_t packed = 0;
        st = fg_pack_short_items(&c->div, cost, &sh, a->kv_head_count, max_blocks, &packed);
        if (st != FG_SUCCESS) { candidate_free(c); return st; }
        if (packed) fg_division_drop_lpt(&c->div); /* its estimate was of the unpacked items */
    }
    if ((int64_t)c->div.num_items * a->kv_head_count > INT32_MAX / 2) {
        candidate_free(c);
        return fg_fail(FG_ERR_OVERFLOW, "fg_plan_create: %d work items x %d KV heads overflow the task index",
                       c->div.num_items, a->kv_head_count);
    }
    st = assign_slots(c, num_qtok);
    if (st != FG_SUCCESS) {
        candidate_free(c);
        return st == FG_ERR_OUT_OF_MEMORY ? fg_fail(st, "fg_plan_create: out of host memory") : st;
    }
    c->max_item_rows = 1;
    for (int32_t i = 0; i < c->div.num_items; i++) {
        int32_t n = c->div.item_row_off[i + 1] - c->div.item_row_off[i];
        if (n > c->max_item_rows) c->max_item_rows = n;
    }
    c->num_tasks = c->div.num_items * a->kv_head_count;
    c->num_blocks = c->num_tasks < max_blocks ? c->num_tasks : max_blocks;
    if (c->num_blocks < 1) c->num_blocks = 1;
    c->block_task_off = malloc(sizeof(int32_t) * ((size_t)c->num_blocks + 1));
    c->block_task = malloc(sizeof(int32_t) * (size_t)(c->num_tasks ? c->num_tasks : 1));
    if (!c->block_task_off || !c->block_task) {
        candidate_free(c);
        return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_plan_create: out of host memory");
    }
    /* task t = item t / heads: the scheduler takes the item costs as they are */
    st = fg_schedule_items_hint(c->div.item_cost_us, c->div.num_items, a->kv_head_count, c->num_blocks,
                                &c->div.lpt, c->block_task_off, c->block_task, &c->makespan_us, &c->imbalance);
    fg_division_drop_lpt(&c->div); /* used up: keep the plan's peak heap small */
    if (st != FG_SUCCESS) { candidate_free(c); return st; }
    int64_t merge_rows = (int64_t)c->num_merge * a->kv_head_count * group;
    c->predicted_us = fg_cost_step_us(cost, c->makespan_us, merge_rows, c->num_merge ? 2 : 1);
    return FG_SUCCESS;
}

/* A lower bound on the plain (non-sharing) candidate's predicted step, in O(R): every
 * request's KV is read by at least one task per row group, each of at least one row and
 * one fixed cost; splitting a range only adds fixed costs, partial-state bytes and tile
 * padding (the cost model is affine in KV tokens, its padding superadditive). So the
 * plain makespan is at least this work over the blocks, and at least the cost of the
 * longest chunk a request can be cut into (fg_divide never cuts a node of length L into
 * more than L / its minimum chunk for one row); the step adds at least one launch. When the shared plan beats the bound, the plain
 * plan cannot win and is not built. */
static double plain_lower_bound(fg_context ctx, const fg_attn_desc *a, int32_t group, const fg_batch_desc *b) {
    const fg_cost_params *cost = &ctx->cost;
    int32_t max_blocks = ctx->gpu ? cost->compute_units * (cost->blocks_per_unit > 0 ? cost->blocks_per_unit : 1)
                                  : ctx->num_threads;
    if (max_blocks < 1) max_blocks = 1;
    fg_cost_shape sh = {group, a->head_dim_qk, a->head_dim_v, fg_dtype_size(a->q_dtype), fg_dtype_size(a->kv_dtype),
                        a->page_size};
    int32_t rpb = cost->tile_rows / group;
    if (rpb < 1) rpb = 1;
    int32_t P = cost->pad_kv > 1 ? cost->pad_kv : 1;
    const double S = 1048576.0;
    double m0 = fg_cost_mem_us(cost, &sh, 1, 0, 0);
    double mk = (fg_cost_mem_us(cost, &sh, 1, 0, (int64_t)S) - m0) / S; /* per KV token */
    double ck = fg_cost_compute_us(cost, &sh, 1, P) / P;                 /* per padded KV token */
    fg_divide_input din = {.group = group, .head_dim_qk = a->head_dim_qk, .head_dim_v = a->head_dim_v,
                           .q_elem_bytes = sh.q_elem_bytes, .kv_elem_bytes = sh.kv_elem_bytes,
                           .page_size = a->page_size};
    int32_t mc = fg_divide_min_chunk(&din, cost, 1);
    if (mc < 1) mc = 1;
    double total = 0.0;
    int32_t longest = 0;
    /* batches repeat lengths: the divisions below are redone only when (L, q) changes */
    int32_t prev_L = -1, prev_q = -1;
    double prev_add = 0.0;
    for (int32_t r = 0; r < b->num_requests; r++) {
        int32_t L = b->kv_len[r];
        if (L != prev_L || b->q_len[r] != prev_q) {
            double mem = m0 + mk * L, cmp = ck * (double)(((int64_t)L + P - 1) / P * P);
            double item = (mem > cmp ? mem : cmp) + cost->task_fixed_us;
            prev_add = item * (double)((b->q_len[r] + rpb - 1) / rpb);
            int32_t cnt = L / mc;
            if (cnt < 1) cnt = 1;
            int32_t chunk = (int32_t)(((int64_t)L + cnt - 1) / cnt);
            if (chunk > longest) longest = chunk;
            prev_L = L;
            prev_q = b->q_len[r];
        }
        total += prev_add;
    }
    double mem = m0 + mk * longest, cmp = ck * (double)(((int64_t)longest + P - 1) / P * P);
    double big = (mem > cmp ? mem : cmp) + cost->task_fixed_us;
    double work = total * a->kv_head_count / max_blocks;
    double lb = (work > big ? work : big) + cost->launch_us;
    return lb * (1.0 - 1e-6); /* margin for the rounding of the closed form */
}

/* Position -> page index: a shift for the usual power-of-two page sizes, else a division
 * (a division per segment end cost ~5 us in a 320-segment plan). */
typedef struct page_div {
    int32_t ps, shift; /* shift < 0: not a power of two */
} page_div;
static inline int32_t page_of_pos(page_div pd, int32_t pos) {
    return pd.shift >= 0 ? pos >> pd.shift : pos / pd.ps;
}
/* The pages of the division's segment s: the run page_of(kv_begin) .. page_of(kv_end - 1)
 * of its request's table (none when it is empty). */
static inline int32_t seg_pages(const fg_seg *s, page_div pd) {
    return s->kv_end > s->kv_begin ? page_of_pos(pd, s->kv_end - 1) - page_of_pos(pd, s->kv_begin) + 1 : 0;
}
/* dst[i] = src[i] for i < n; nonzero when some id is outside [0, np). Two signed
 * compares, not one unsigned: SSE2 has the signed one, so the loop vectorises on any
 * x86-64 (the unsigned form was emulated, ~9 instructions per 4 ids). */
static inline int32_t copy_run(int32_t *restrict dst, const int32_t *restrict src, int32_t n, int32_t np) {
    int32_t bad = 0;
    for (int32_t i = 0; i < n; i++) {
        const int32_t v = src[i];
        dst[i] = v;
        bad |= (v < 0) | (v >= np);
    }
    return bad;
}

/* Lay the lists out (256-byte aligned) and write their host image. */
static fg_status build_work_list(fg_plan p, candidate *c, const fg_batch_desc *b) {
    fg_work_layout *L = &p->layout;
    const fg_division *d = &c->div;
    const int32_t ps = p->attn.page_size;
    const page_div pd = {ps, (ps & (ps - 1)) == 0 ? __builtin_ctz((unsigned)ps) : -1};
    int64_t num_page_entries = 0;
    for (int32_t i = 0; i < d->num_segs; i++) num_page_entries += seg_pages(&d->seg[i], pd);
    if (num_page_entries > INT32_MAX) /* at most the batch's own page count: never, in practice */
        return fg_fail(FG_ERR_OVERFLOW, "fg_plan_create: the plan's segments read %lld page ids, past %d",
                       (long long)num_page_entries, INT32_MAX);
    int64_t off = 0;
#define PLACE(field, bytes) do { L->field = off; off = fg_align_up(off + (int64_t)(bytes), FG_ALIGN); } while (0)
    PLACE(item_seg_off, sizeof(int32_t) * ((size_t)d->num_items + 1));
    PLACE(seg, sizeof(fg_work_seg) * (size_t)d->num_segs);
    PLACE(item_row_off, sizeof(int32_t) * ((size_t)d->num_items + 1));
    PLACE(row, sizeof(fg_row) * (size_t)d->num_rows);
    PLACE(block_task_off, sizeof(int32_t) * ((size_t)c->num_blocks + 1));
    PLACE(block_task, sizeof(int32_t) * (size_t)c->num_tasks);
    PLACE(page, sizeof(int32_t) * (size_t)num_page_entries);
    PLACE(merge_off, sizeof(int32_t) * ((size_t)p->num_qtok + 1));
    PLACE(merge_slot, sizeof(int32_t) * (size_t)c->num_merge);
    L->list_bytes = off;
    int64_t heads = (int64_t)p->attn.kv_head_count * p->group;
    PLACE(partial_o, sizeof(float) * (size_t)c->num_slots * (size_t)heads * (size_t)p->attn.head_dim_v);
    PLACE(partial_lse, sizeof(float) * (size_t)c->num_slots * (size_t)heads);
    L->scratch = off;
    /* GPU: one int32 arrival counter per (q token, KV head) for kernels that merge in the
     * partial pass (zeroed by fg_plan_upload; the kernel leaves it zero again after each run,
     * so graph replays need no reset). CPU: per-thread tile buffers. */
    L->scratch_bytes = p->ctx->gpu ? fg_align_up((int64_t)p->num_qtok * p->attn.kv_head_count * 4, FG_ALIGN)
                                   : fg_cpu_scratch_bytes(p);
    off = fg_align_up(off + L->scratch_bytes, FG_ALIGN);
    L->total = off;
#undef PLACE
    void *hv = NULL;
    fg_status st = fg_ctx_buf_take(p->ctx, (size_t)L->list_bytes, &hv, &p->list_cap);
    if (st != FG_SUCCESS) return st;
    char *h = hv;
    /* Zero only the alignment padding between the lists (every list byte is written below). */
    {
        const int64_t end[9][2] = {
            {L->item_seg_off + (int64_t)sizeof(int32_t) * (d->num_items + 1), L->seg},
            {L->seg + (int64_t)sizeof(fg_work_seg) * d->num_segs, L->item_row_off},
            {L->item_row_off + (int64_t)sizeof(int32_t) * (d->num_items + 1), L->row},
            {L->row + (int64_t)sizeof(fg_row) * d->num_rows, L->block_task_off},
            {L->block_task_off + (int64_t)sizeof(int32_t) * (c->num_blocks + 1), L->block_task},
            {L->block_task + (int64_t)sizeof(int32_t) * c->num_tasks, L->page},
            {L->page + (int64_t)sizeof(int32_t) * num_page_entries, L->merge_off},
            {L->merge_off + (int64_t)sizeof(int32_t) * (p->num_qtok + 1), L->merge_slot},
            {L->merge_slot + (int64_t)sizeof(int32_t) * c->num_merge, L->list_bytes}};
        for (int k = 0; k < 9; k++)
            if (end[k][1] > end[k][0]) memset(h + end[k][0], 0, (size_t)(end[k][1] - end[k][0]));
    }
    p->list = h;
    memcpy(h + L->item_seg_off, d->item_seg_off, sizeof(int32_t) * ((size_t)d->num_items + 1));
    memcpy(h + L->item_row_off, d->item_row_off, sizeof(int32_t) * ((size_t)d->num_items + 1));
    {   /* Rows with their slots: rows are in item order, so taking each merged token's
         * next slot as its rows come fills each merge list in item order. The offsets go
         * to the list first; c->merge_off then serves as the per-token cursors. */
        int32_t *moff = (int32_t *)(h + L->merge_off), *cur = c->merge_off;
        memcpy(moff, cur, sizeof(int32_t) * ((size_t)p->num_qtok + 1));
        fg_row *rows = (fg_row *)(h + L->row);
        const int32_t *count = d->qtok_items; /* merged (a non-empty list) when > 1 */
        for (int32_t i = 0; i < d->num_rows; i++) {
            const int32_t q = d->row[i].qtok;
            rows[i] = d->row[i];
            rows[i].slot = count[q] > 1 ? cur[q]++ : -1;
        }
        /* the count in a local: read through c, it would be reloaded after every store
         * (an int32 store may alias it), which keeps this loop from vectorising */
        int32_t *ms = (int32_t *)(h + L->merge_slot);
        const int32_t num_merge = c->num_merge;
        for (int32_t k = 0; k < num_merge; k++) ms[k] = k;
    }
    memcpy(h + L->block_task_off, c->block_task_off, sizeof(int32_t) * ((size_t)c->num_blocks + 1));
    memcpy(h + L->block_task, c->block_task, sizeof(int32_t) * (size_t)c->num_tasks);
    {   /* The segments with their own runs of pages, copied and range-checked in one pass
         * (validate_batch left the check). For sharing found in the block tables, checking
         * the copied ids checks them all: each request lists exactly the pages of its kv_len
         * (validate_batch), its KV is covered by the segments of the nodes on its forest
         * path, and a node's pages are the same ids in every request through it (that is
         * what made it one node). An explicit tree only asserts that: the other requests'
         * ids under a shared node are never read, so they get the full scan. */
        fg_work_seg *ws = (fg_work_seg *)(h + L->seg);
        int32_t *pg = (int32_t *)(h + L->page);
        int32_t at = 0, bad = 0;
        for (int32_t i = 0; i < d->num_segs; i++) {
            const fg_seg s = d->seg[i];
            const int32_t first = page_of_pos(pd, s.kv_begin), n = seg_pages(&s, pd);
            ws[i] = (fg_work_seg){at - first, s.kv_begin, s.kv_end, s.rank_lo, s.rank_hi};
            bad |= copy_run(pg + at, b->page_indices + b->page_indptr[s.src_req] + first, n, b->num_pages);
            at += n;
        }
        if (bad || b->tree) {
            fg_status st = check_pages(b, b->num_requests);
            if (st != FG_SUCCESS) return st;
        }
    }
    return FG_SUCCESS;
}

static void fill_stats(fg_plan p, const candidate *c, const fg_forest *f, double nonshared_us,
                       int sharing_used) {
    fg_plan_stats *s = &p->stats;
    const fg_attn_desc *a = &p->attn;
    int64_t heads = (int64_t)a->kv_head_count * p->group;
    int64_t kv_tok_bytes = (int64_t)(a->head_dim_qk + a->head_dim_v) * fg_dtype_size(a->kv_dtype) * a->kv_head_count;
    memset(s, 0, sizeof *s);
    s->num_requests = p->num_requests;
    s->num_q_tokens = p->num_qtok;
    s->num_nodes = f->num_nodes;
    s->num_roots = f->num_roots;
    s->max_depth = f->max_depth;
    s->unique_kv_tokens = f->unique_tokens;
    s->nonshared_kv_tokens = f->total_tokens;
    s->unique_kv_bytes = f->unique_tokens * kv_tok_bytes;
    s->nonshared_kv_bytes = f->total_tokens * kv_tok_bytes;
    s->qo_bytes = (int64_t)p->num_qtok * heads * (a->head_dim_qk + a->head_dim_v) * fg_dtype_size(a->q_dtype);
    s->partial_bytes = (int64_t)c->num_slots * heads * (a->head_dim_v + 1) * 4 * 2;
    s->num_items = c->div.num_items;
    s->num_tasks = c->num_tasks;
    s->num_blocks = c->num_blocks;
    s->num_partials = c->num_slots;
    s->sharing_used = sharing_used;
    s->predicted_us = c->predicted_us;
    s->predicted_nonshared_us = nonshared_us;
    double flops = 0.0;
    for (int32_t r = 0; r < p->num_requests; r++) {
        int32_t q = p->q_indptr[r + 1] - p->q_indptr[r];
        /* token i sees kv_len - q + i + 1 keys */
        double keys = (double)q * (p->kv_len[r] - q) + (double)q * (q + 1) / 2.0;
        flops += 2.0 * (double)heads * keys * (a->head_dim_qk + a->head_dim_v);
    }
    s->predicted_floor_us = fg_cost_floor_us(&p->ctx->cost, s->unique_kv_bytes + s->qo_bytes, flops);
    s->imbalance = c->imbalance;
    s->workspace_bytes = (size_t)p->layout.total;
}

fg_status fg_plan_create(fg_context ctx, const fg_attn_desc *attn, const fg_batch_desc *batch, fg_plan *out) {
    if (!ctx) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_create: ctx is NULL");
    if (!attn) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_create: attn is NULL");
    if (!batch) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_create: batch is NULL");
    if (!out) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_create: plan (output pointer) is NULL");
    fg_status st = validate_attn(ctx, attn);
    if (st != FG_SUCCESS) return st;
    int32_t num_qtok = 0;
    st = validate_batch(batch, attn->page_size, &num_qtok);
    if (st != FG_SUCCESS) return st;

    fg_plan p = calloc(1, sizeof *p);
    if (!p) return pages_first(batch, fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_plan_create: out of host memory"));
    p->ctx = ctx;
    p->attn = *attn;
    if (p->attn.kv_head_count == 0) p->attn.kv_head_count = attn->num_kv_heads - attn->kv_head_begin;
    if (p->attn.scale == 0.0f) p->attn.scale = 1.0f / sqrtf((float)attn->head_dim_qk);
    p->group = attn->num_q_heads / attn->num_kv_heads;
    p->num_requests = batch->num_requests;
    p->num_qtok = num_qtok;
    p->q_indptr = malloc(sizeof(int32_t) * ((size_t)batch->num_requests + 1));
    p->kv_len = malloc(sizeof(int32_t) * (size_t)batch->num_requests);
    if (!p->q_indptr || !p->kv_len) {
        fg_plan_destroy(p);
        return pages_first(batch, fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_plan_create: out of host memory"));
    }
    p->q_indptr[0] = 0;
    for (int32_t r = 0; r < batch->num_requests; r++) {
        p->q_indptr[r + 1] = p->q_indptr[r] + batch->q_len[r];
        p->kv_len[r] = batch->kv_len[r];
    }

    int want_sharing = !(batch->flags & FG_BATCH_NO_SHARING);
    candidate shared, plain;
    memset(&shared, 0, sizeof shared);
    memset(&plain, 0, sizeof plain);
    candidate *chosen;
    double nonshared_us;
    int sharing_used = 0;
    if (want_sharing) {
        st = build_candidate(ctx, &p->attn, p->group, batch, p->q_indptr, num_qtok, 0, &shared);
        if (st != FG_SUCCESS) { fg_plan_destroy(p); return pages_first(batch, st); }
    }
    double plain_lb = want_sharing ? plain_lower_bound(ctx, &p->attn, p->group, batch) : 0.0;
    if (want_sharing && shared.forest.unique_tokens == shared.forest.total_tokens) {
        /* Nothing is shared: the shared plan is the plain split-KV plan. */
        chosen = &shared;
        nonshared_us = shared.predicted_us;
    } else if (want_sharing && shared.predicted_us <= plain_lb) {
        /* The plain plan cannot beat the shared one: skip building it and report the
         * bound as its prediction (it is what a perfectly balanced plain split-KV plan
         * would take). */
        chosen = &shared;
        nonshared_us = plain_lb;
        sharing_used = 1;
    } else {
        st = build_candidate(ctx, &p->attn, p->group, batch, p->q_indptr, num_qtok, 1, &plain);
        if (st != FG_SUCCESS) { candidate_free(&shared); fg_plan_destroy(p); return pages_first(batch, st); }
        nonshared_us = plain.predicted_us;
        if (want_sharing && (shared.predicted_us <= plain.predicted_us ||
                             (batch->flags & FG_BATCH_FORCE_SHARING))) {
            chosen = &shared;
            sharing_used = 1;
        } else {
            chosen = &plain;
        }
    }
    p->forest = chosen->forest;
    memset(&chosen->forest, 0, sizeof chosen->forest);
    p->num_items = chosen->div.num_items;
    p->num_segs = chosen->div.num_segs;
    p->num_rows = chosen->div.num_rows;
    p->num_tasks = chosen->num_tasks;
    p->num_blocks = chosen->num_blocks;
    p->num_slots = chosen->num_slots;
    p->num_merge = chosen->num_merge;
    p->max_item_rows = chosen->max_item_rows;
    st = build_work_list(p, chosen, batch);
    if (st == FG_SUCCESS) {
        fill_stats(p, chosen, &p->forest, nonshared_us, sharing_used);
        if (!sharing_used && want_sharing) {
            /* Report the forest that was found even when the plain path was chosen. */
            const fg_forest *f = chosen == &plain ? &shared.forest : &p->forest;
            p->stats.num_nodes = f->num_nodes;
            p->stats.num_roots = f->num_roots;
            p->stats.max_depth = f->max_depth;
            p->stats.unique_kv_tokens = f->unique_tokens;
            p->stats.unique_kv_bytes = f->unique_tokens * (p->stats.nonshared_kv_bytes /
                                       (f->total_tokens ? f->total_tokens : 1));
        }
    }
    candidate_free(&shared);
    candidate_free(&plain);
    if (st != FG_SUCCESS) { fg_plan_destroy(p); return pages_first(batch, st); }
    *out = p;
    return FG_SUCCESS;
}

fg_status fg_plan_destroy(fg_plan p) {
    if (!p) return FG_SUCCESS;
    fg_ctx_buf_give(p->ctx, p->list, p->list_cap);
    fg_forest_free(&p->forest);
    free(p->q_indptr);
    free(p->kv_len);
    free(p);
    return FG_SUCCESS;
}

fg_status fg_plan_workspace_size(fg_plan p, size_t *bytes) {
    if (!p) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_workspace_size: plan is NULL");
    if (!bytes) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_workspace_size: bytes is NULL");
    *bytes = (size_t)p->layout.total;
    return FG_SUCCESS;
}

fg_status fg_plan_stats_get(fg_plan p, fg_plan_stats *stats) {
    if (!p) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_stats_get: plan is NULL");
    if (!stats) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_stats_get: stats is NULL");
    *stats = p->stats;
    return FG_SUCCESS;
}

fg_status fg_plan_upload(fg_plan p, void *workspace, size_t workspace_bytes, void *stream) {
    if (!p) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_upload: plan is NULL");
    if (!workspace) return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_upload: workspace is NULL");
    if ((uintptr_t)workspace % 16)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_plan_upload: workspace %p is not 16-byte aligned", workspace);
    if (workspace_bytes < (size_t)p->layout.total)
        return fg_fail(FG_ERR_WORKSPACE_TOO_SMALL,
                       "fg_plan_upload: workspace_bytes = %zu is below the %lld bytes fg_plan_workspace_size gives",
                       workspace_bytes, (long long)p->layout.total);
    if (p->ctx->gpu) {
        char msg[256] = "";
        fg_status st = p->ctx->gpu->copy(p->ctx->gpu_state, workspace, p->list, (size_t)p->layout.list_bytes,
                                         FG_COPY_H2D, stream, msg, sizeof msg);
        if (st == FG_SUCCESS && p->layout.scratch_bytes > 0)
            st = p->ctx->gpu->memset_(p->ctx->gpu_state, (char *)workspace + p->layout.scratch, 0,
                                      (size_t)p->layout.scratch_bytes, stream, msg, sizeof msg);
        if (st != FG_SUCCESS) return fg_fail(st, "fg_plan_upload: %s", msg);
    } else {
        memcpy(workspace, p->list, (size_t)p->layout.list_bytes);
    }
    p->uploaded_workspace = workspace;
    return FG_SUCCESS;
}

fg_status fg_tensors_default_strides(const fg_attn_desc *a, fg_tensors *t) {
    if (!a) return fg_fail(FG_ERR_NULL_POINTER, "fg_tensors_default_strides: attn is NULL");
    if (!t) return fg_fail(FG_ERR_NULL_POINTER, "fg_tensors_default_strides: tensors is NULL");
    if (a->num_q_heads < 1 || a->num_kv_heads < 1 || a->head_dim_qk < 1 || a->head_dim_v < 1 || a->page_size < 1)
        return fg_fail(FG_ERR_INVALID_VALUE,
                       "fg_tensors_default_strides: attn has a head count, head dim or page size below 1");
    t->q_stride_head = a->head_dim_qk;
    t->q_stride_token = (int64_t)a->num_q_heads * a->head_dim_qk;
    t->k_stride_head = a->head_dim_qk;
    t->k_stride_token = (int64_t)a->num_kv_heads * a->head_dim_qk;
    t->k_stride_page = t->k_stride_token * a->page_size;
    t->v_stride_head = a->head_dim_v;
    t->v_stride_token = (int64_t)a->num_kv_heads * a->head_dim_v;
    t->v_stride_page = t->v_stride_token * a->page_size;
    t->o_stride_head = a->head_dim_v;
    t->o_stride_token = (int64_t)a->num_q_heads * a->head_dim_v;
    t->lse_stride_head = 1;
    t->lse_stride_token = a->num_q_heads;
    return FG_SUCCESS;
}

/* The largest element index a tensor is addressed at must fit comfortably in int64. */
static int strides_ok(int64_t n0, int64_t s0, int64_t n1, int64_t s1, int64_t n2, int64_t s2, int64_t d) {
    const int64_t lim = INT64_MAX / 4;
    if (s0 <= 0 || s1 <= 0 || (n2 > 0 && s2 <= 0)) return 0;
    if (s0 > lim / (n0 > 0 ? n0 : 1) || s1 > lim / (n1 > 0 ? n1 : 1) || (n2 > 0 && s2 > lim / n2)) return 0;
    return (n0 * s0) / 4 + (n1 * s1) / 4 + (n2 > 0 ? (n2 * s2) / 4 : 0) + d / 4 < lim / 4;
}

fg_status fg_run(fg_plan p, const fg_tensors *t, void *workspace, size_t workspace_bytes, void *stream) {
    if (!p) return fg_fail(FG_ERR_NULL_POINTER, "fg_run: plan is NULL");
    if (!t) return fg_fail(FG_ERR_NULL_POINTER, "fg_run: tensors is NULL");
    if (!t->q) return fg_fail(FG_ERR_NULL_POINTER, "fg_run: tensors->q is NULL");
    if (!t->k_cache) return fg_fail(FG_ERR_NULL_POINTER, "fg_run: tensors->k_cache is NULL");
    if (!t->v_cache) return fg_fail(FG_ERR_NULL_POINTER, "fg_run: tensors->v_cache is NULL");
    if (!t->o) return fg_fail(FG_ERR_NULL_POINTER, "fg_run: tensors->o is NULL");
    if (!workspace) return fg_fail(FG_ERR_NULL_POINTER, "fg_run: workspace is NULL");
    const fg_attn_desc *a = &p->attn;
    if (!strides_ok(p->num_qtok, t->q_stride_token, a->num_q_heads, t->q_stride_head, 0, 0, a->head_dim_qk))
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_run: tensors->q_stride_token = %lld / q_stride_head = %lld must be "
                       "positive and address Q within int64", (long long)t->q_stride_token, (long long)t->q_stride_head);
    if (!strides_ok(p->num_qtok, t->o_stride_token, a->num_q_heads, t->o_stride_head, 0, 0, a->head_dim_v))
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_run: tensors->o_stride_token = %lld / o_stride_head = %lld must be "
                       "positive and address O within int64", (long long)t->o_stride_token, (long long)t->o_stride_head);
    if (!strides_ok(INT32_MAX, t->k_stride_page, a->page_size, t->k_stride_token, a->num_kv_heads, t->k_stride_head,
                    a->head_dim_qk))
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_run: tensors->k_stride_page/token/head = %lld/%lld/%lld must be positive",
                       (long long)t->k_stride_page, (long long)t->k_stride_token, (long long)t->k_stride_head);
    if (!strides_ok(INT32_MAX, t->v_stride_page, a->page_size, t->v_stride_token, a->num_kv_heads, t->v_stride_head,
                    a->head_dim_v))
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_run: tensors->v_stride_page/token/head = %lld/%lld/%lld must be positive",
                       (long long)t->v_stride_page, (long long)t->v_stride_token, (long long)t->v_stride_head);
    if (t->lse && !strides_ok(p->num_qtok, t->lse_stride_token, a->num_q_heads, t->lse_stride_head, 0, 0, 1))
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_run: tensors->lse_stride_token = %lld / lse_stride_head = %lld must "
                       "be positive", (long long)t->lse_stride_token, (long long)t->lse_stride_head);
    if (!isfinite(t->scale_override))
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_run: tensors->scale_override = %g is not finite",
                       (double)t->scale_override);
    if (workspace_bytes < (size_t)p->layout.total)
        return fg_fail(FG_ERR_WORKSPACE_TOO_SMALL,
                       "fg_run: workspace_bytes = %zu is below the %lld bytes fg_plan_workspace_size gives",
                       workspace_bytes, (long long)p->layout.total);
    if (workspace != p->uploaded_workspace)
        return fg_fail(FG_ERR_NOT_UPLOADED, "fg_run: workspace %p was not filled by fg_plan_upload for this plan",
                       workspace);

    char *w = workspace;
    const fg_work_layout *L = &p->layout;
    fg_kernel_args k;
    memset(&k, 0, sizeof k);
    k.item_seg_off = (const int32_t *)(w + L->item_seg_off);
    k.seg = (const fg_work_seg *)(w + L->seg);
    k.item_row_off = (const int32_t *)(w + L->item_row_off);
    k.row = (const fg_row *)(w + L->row);
    k.block_task_off = (const int32_t *)(w + L->block_task_off);
    k.block_task = (const int32_t *)(w + L->block_task);
    k.page = (const int32_t *)(w + L->page);
    k.merge_off = (const int32_t *)(w + L->merge_off);
    k.merge_slot = (const int32_t *)(w + L->merge_slot);
    k.partial_o = (float *)(w + L->partial_o);
    k.partial_lse = (float *)(w + L->partial_lse);
    k.scratch = w + L->scratch;
    k.q = t->q;
    k.k = t->k_cache;
    k.v = t->v_cache;
    k.o = t->o;
    k.lse = t->lse;
    k.q_stride_token = t->q_stride_token;
    k.q_stride_head = t->q_stride_head;
    k.k_stride_page = t->k_stride_page;
    k.k_stride_token = t->k_stride_token;
    k.k_stride_head = t->k_stride_head;
    k.v_stride_page = t->v_stride_page;
    k.v_stride_token = t->v_stride_token;
    k.v_stride_head = t->v_stride_head;
    k.o_stride_token = t->o_stride_token;
    k.o_stride_head = t->o_stride_head;
    k.lse_stride_token = t->lse_stride_token;
    k.lse_stride_head = t->lse_stride_head;
    k.num_items = p->num_items;
    k.num_tasks = p->num_tasks;
    k.num_blocks = p->num_blocks;
    k.num_qtok = p->num_qtok;
    k.num_slots = p->num_slots;
    k.max_item_rows = p->max_item_rows;
    k.kv_head_begin = a->kv_head_begin;
    k.kv_head_count = a->kv_head_count;
    k.group = p->group;
    k.head_dim_qk = a->head_dim_qk;
    k.head_dim_v = a->head_dim_v;
    k.page_size = a->page_size;
    k.q_dtype = a->q_dtype;
    k.kv_dtype = a->kv_dtype;
    k.scale = t->scale_override != 0.0f ? t->scale_override : a->scale;

    if (p->ctx->gpu) {
        char msg[256] = "";
        fg_status st = p->ctx->gpu->run(p->ctx->gpu_state, &k, stream, msg, sizeof msg);
        if (st != FG_SUCCESS) return fg_fail(st, "fg_run: %s", msg);
        return FG_SUCCESS;
    }
    return fg_cpu_run(p->ctx, &k, L->scratch_bytes / p->ctx->num_threads);
}

fg_status fg_block_table_to_csr(int32_t n, const int32_t *kv_len, int32_t page_size, const int32_t *table,
                                int64_t stride, int32_t max_pages, int32_t *indptr, int32_t *indices,
                                int64_t *capacity) {
    if (!kv_len) return fg_fail(FG_ERR_NULL_POINTER, "fg_block_table_to_csr: kv_len is NULL");
    if (!table) return fg_fail(FG_ERR_NULL_POINTER, "fg_block_table_to_csr: block_table is NULL");
    if (!capacity) return fg_fail(FG_ERR_NULL_POINTER, "fg_block_table_to_csr: indices_capacity is NULL");
    if ((indptr == NULL) != (indices == NULL))
        return fg_fail(FG_ERR_NULL_POINTER, "fg_block_table_to_csr: %s is NULL but %s is not",
                       indptr ? "indices" : "indptr", indptr ? "indptr" : "indices");
    if (n < 1) return fg_fail(FG_ERR_INVALID_VALUE, "fg_block_table_to_csr: num_requests = %d is not >= 1", n);
    if (page_size < 1) return fg_fail(FG_ERR_INVALID_VALUE, "fg_block_table_to_csr: page_size = %d is not >= 1", page_size);
    if (max_pages < 1) return fg_fail(FG_ERR_INVALID_VALUE, "fg_block_table_to_csr: max_pages = %d is not >= 1", max_pages);
    if (stride < max_pages)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_block_table_to_csr: stride = %lld is below max_pages = %d",
                       (long long)stride, max_pages);
    int64_t total = 0;
    for (int32_t r = 0; r < n; r++) {
        if (kv_len[r] < 1)
            return fg_fail(FG_ERR_INVALID_VALUE, "fg_block_table_to_csr: kv_len[%d] = %d is not >= 1", r, kv_len[r]);
        int64_t need = ((int64_t)kv_len[r] + page_size - 1) / page_size;
        if (need > max_pages)
            return fg_fail(FG_ERR_SHAPE_MISMATCH,
                           "fg_block_table_to_csr: kv_len[%d] = %d needs %lld pages but max_pages = %d", r,
                           kv_len[r], (long long)need, max_pages);
        total += need;
    }
    if (total > INT32_MAX)
        return fg_fail(FG_ERR_OVERFLOW, "fg_block_table_to_csr: %lld pages in all overflow int32", (long long)total);
    if (!indptr) { *capacity = total; return FG_SUCCESS; }
    if (*capacity < total) {
        int64_t have = *capacity;
        *capacity = total;
        return fg_fail(FG_ERR_WORKSPACE_TOO_SMALL,
                       "fg_block_table_to_csr: indices_capacity = %lld is below the %lld pages needed",
                       (long long)have, (long long)total);
    }
    int64_t k = 0;
    indptr[0] = 0;
    for (int32_t r = 0; r < n; r++) {
        int64_t need = ((int64_t)kv_len[r] + page_size - 1) / page_size;
        for (int64_t i = 0; i < need; i++) indices[k++] = table[(int64_t)r * stride + i];
        indptr[r + 1] = (int32_t)k;
    }
    return FG_SUCCESS;
}
