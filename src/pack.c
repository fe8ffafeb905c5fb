/* Packing of short single-request items; see pack.h. */
#include <stdlib.h>

#include "internal.h"
#include "pack.h"

/* Longest segment worth packing, in KV tiles: longer ones already stream well alone. */
#define FG_PACK_MAX_SEG_TILES 2
/* Most KV tiles in one packed item: keeps packed tasks short enough to balance. */
#define FG_PACK_MAX_TILES 8

/* The predicted time of a packed task of `rows` rows (all partial, the worst case) over
 * kv tokens: fg_cost_task_us's expression, with the cost model's constants derived once.
 * Packs of a batch repeat the same (rows, kv) steps (sibling leaves of one length), so
 * results are memoised (direct mapped): the four divisions per candidate were most of
 * the pass. A pure function of (rows, kv): the memo changes no value. */
#define PACK_MEMO 64
typedef struct pack_memo {
    int32_t rows;
    int64_t kv;
    double v;
} pack_memo;

static double packed_cost(const fg_cost_fast *fc, const fg_cost_params *cost, pack_memo *memo, int32_t rows,
                          int64_t kv) {
    pack_memo *e = &memo[((uint64_t)rows * 0x9E3779B97F4A7C15ull ^ (uint64_t)kv * 0xC2B2AE3D27D4EB4Full) >> 58];
    if (e->rows == rows && e->kv == kv) return e->v;
    double pm = fg_cost_fast_mem_us(fc, rows, rows, kv);
    double pc = fg_cost_fast_compute_us(fc, rows, kv);
    double v = (pm > pc ? pm : pc) + cost->task_fixed_us;
    *e = (pack_memo){rows, kv, v};
    return v;
}

static int packable(const fg_division *d, int32_t i, int32_t tile_kv) {
    if (d->item_seg_off[i + 1] - d->item_seg_off[i] != 1) return 0;
    const fg_seg *s = &d->seg[d->item_seg_off[i]];
    return s->rank_hi - s->rank_lo == 1 && s->kv_end - s->kv_begin <= FG_PACK_MAX_SEG_TILES * tile_kv;
}

fg_status fg_pack_short_items(fg_division *d, const fg_cost_params *cost, const fg_cost_shape *shape,
                              int32_t *removed) {
    *removed = 0;
    int32_t n = d->num_items;
    int32_t tile_kv = cost->tile_kv > 0 ? cost->tile_kv : 64;
    int32_t max_rows = cost->tile_rows / (shape->group > 0 ? shape->group : 1);
    if (max_rows < 2 || n < 2) return FG_SUCCESS;

    /* pack_cost[i]: the cost of the pack item i heads. pack_of[i]: index of the first
     * item of i's pack (i itself when unpacked). in_pack[k]: the first item of the last
     * pack that took an item of rank k (-1: none), over the forest's ranks (the segments
     * name no others). One allocation. */
    const int32_t nrank = d->num_ranks;
    double *pack_cost = malloc(sizeof(double) * (size_t)n + sizeof(int32_t) * ((size_t)n + (size_t)nrank));
    if (!pack_cost) return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_plan_create: out of host memory packing items");
    int32_t *pack_of = (int32_t *)(pack_cost + n), *in_pack = pack_of + n;
    /* fg_cost_task_us's expression, with the cost model's constants derived once */
    fg_cost_fast fc;
    fg_cost_fast_init(cost, shape, &fc);
    pack_memo memo[PACK_MEMO];
    for (int k = 0; k < PACK_MEMO; k++) memo[k].rows = -1; /* no pack has -1 rows */
    int32_t head = -1, rows = 0, segs = 0, count = 0;
    int64_t kv = 0;
    double cost_sum = 0.0;
    for (int32_t k = 0; k < nrank; k++) in_pack[k] = -1;
    for (int32_t i = 0; i < n; i++) {
        pack_of[i] = i;
        pack_cost[i] = d->item_cost_us[i];
        if (!packable(d, i, tile_kv)) { head = -1; continue; }
        const fg_seg *s = &d->seg[d->item_seg_off[i]];
        int32_t r = d->item_row_off[i + 1] - d->item_row_off[i];
        int64_t len = s->kv_end - s->kv_begin;
        int ok = head >= 0 && rows + r <= max_rows && kv + len <= (int64_t)FG_PACK_MAX_TILES * tile_kv;
        /* A request may own several short items (chunks): one pack never holds a request
         * twice. Every item from head to i - 1 is in head's pack (an item that does not
         * join starts a new pack or ends it), so "some member has i's rank" is "the last
         * pack to take an item of that rank is head's": one lookup, where a walk over
         * the members (up to a pack's size per item) was a third of this pass. */
        if (ok && in_pack[s->rank_lo] == head) ok = 0;
        if (ok) {
            /* Every row of a packed item writes a partial state in the worst case. */
            double packed = packed_cost(&fc, cost, memo, rows + r, kv + len);
            ok = packed < cost_sum + d->item_cost_us[i];
            if (ok) {
                pack_of[i] = head;
                in_pack[s->rank_lo] = head;
                rows += r;
                kv += len;
                segs += 1;
                count += 1;
                cost_sum = packed;
                pack_cost[head] = packed;
                continue;
            }
        }
        head = i;
        in_pack[s->rank_lo] = i;
        rows = r;
        kv = len;
        segs = 1;
        cost_sum = d->item_cost_us[i];
    }
    if (count == 0) {
        free(pack_cost); /* (with pack_of and in_pack) */
        return FG_SUCCESS;
    }

    /* Members of a pack are consecutive items, whose segments and rows are already stored
     * back to back: packing only drops the item boundaries between them (in place). */
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        if (pack_of[i] != i) continue;
        d->item_seg_off[k] = d->item_seg_off[i];
        d->item_row_off[k] = d->item_row_off[i];
        d->item_cost_us[k] = pack_cost[i];
        k++;
    }
    d->item_seg_off[k] = d->item_seg_off[n];
    d->item_row_off[k] = d->item_row_off[n];
    d->num_items = k;
    *removed = count;
    free(pack_cost); /* (with pack_of and in_pack) */
    return FG_SUCCESS;
}
