/*
 * Packing: a pass after task division that merges items holding one request's KV
 * (short own suffixes under a shared prefix: W5's 256 requests x 64 own tokens; W1's and
 * W2's 256- and 512-token suffixes; speculative branches) into items of several segments.
 * Each segment keeps its one-request rank range, so the kernels' per-row rank mask gives
 * every row exactly its own keys, and the segments stream through one tile pipeline: the
 * task's fixed cost (Q load, pipeline fill, epilogue) is paid once per pack instead of
 * once per request. Fewer, longer tasks can unbalance the schedule, so the pack size is
 * chosen by the LPT schedule it gives (perf/NOTES-gpu.md, session 10: W1 n=32 119 -> 107
 * us on the H100).
 */
#ifndef FG_PACK_H
#define FG_PACK_H

#include "cost_model.h"
#include "divide.h"

/* Rewrites d in place (item order otherwise kept; the packed item takes the place of its
 * first member). Keeps fg_divide's contract. Runs of consecutive one-request items of
 * equal row counts are cut into packs of at most k items, as evenly as possible. k is
 * chosen by the LPT schedule of the tasks (items x kv_heads) on num_blocks blocks, as
 * fg_divide chooses: never a larger makespan than unpacked, then a balanced schedule
 * (imbalance <= 1.10) before an unbalanced one, then the smaller makespan; k = 1 leaves d
 * as it is. Returns the number of items removed in *removed. */
fg_status fg_pack_short_items(fg_division *d, const fg_cost_params *cost, const fg_cost_shape *shape,
                              int32_t kv_heads, int32_t num_blocks, int32_t *removed);

#endif /* FG_PACK_H */
