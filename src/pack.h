/*
 * Packing: a pass after task division that merges items holding one request's short KV
 * (speculative branches, short own suffixes under a shared prefix: W5's 256 requests x 64
 * own tokens) into one item of several segments. Each segment keeps its one-request rank
 * range, so the kernels' per-row rank mask gives every row exactly its own keys; the
 * task's fixed cost (Q load, pipeline fill, epilogue) is then paid once per pack instead
 * of once per request.
 */
#ifndef FG_PACK_H
#define FG_PACK_H

#include "cost_model.h"
#include "divide.h"

/* Rewrites d in place (item order otherwise kept; the packed item takes the place of its
 * first member). Keeps fg_divide's contract. Packs only where the cost model predicts the
 * packed task cheaper than its members. Returns the number of items removed in *removed. */
fg_status fg_pack_short_items(fg_division *d, const fg_cost_params *cost, const fg_cost_shape *shape,
                              int32_t *removed);

#endif /* FG_PACK_H */
