/*
 * Prefix forest: the distinct KV token ranges of a batch and which requests share
 * them. Built from block tables (identical page ids at identical positions) or from
 * an explicit tree. Nodes are numbered in DFS preorder (a parent before its children,
 * siblings ordered by their first request); requests are ranked in the same DFS order,
 * so the requests under a node are the contiguous rank range [rank_lo, rank_hi).
 */
#ifndef FG_FOREST_H
#define FG_FOREST_H

#include <stdint.h>

#include "forgeattn.h"

typedef struct fg_forest {
    int32_t num_nodes;
    int32_t num_requests;
    int32_t num_roots;
    int32_t max_depth;       /* nodes on the longest root-to-node path */
    int32_t *parent;         /* [num_nodes], -1 for roots */
    int32_t *depth;          /* [num_nodes], 1 for roots */
    int32_t *begin;          /* [num_nodes], first KV position of the node */
    int32_t *length;         /* [num_nodes], tokens, >= 1 */
    int32_t *src_req;        /* [num_nodes], request whose block table addresses the node */
    int32_t *rank_lo;        /* [num_nodes] */
    int32_t *rank_hi;        /* [num_nodes] */
    int32_t *req_at_rank;    /* [num_requests] */
    int32_t *rank_of_req;    /* [num_requests] */
    int32_t *req_node;       /* [num_requests], node where the request's KV ends */
    int64_t unique_tokens;   /* sum of node lengths */
    int64_t total_tokens;    /* sum of kv_len */
} fg_forest;

/* Build from the batch's block tables (batch->tree ignored). With no_sharing every
 * request gets its own one-node tree. The batch must already be validated. */
fg_status fg_forest_from_block_tables(const fg_batch_desc *batch, int32_t page_size,
                                      int no_sharing, fg_forest *out);
/* Build from batch->tree, validating it (FG_ERR_INVALID_TREE naming the node/request). */
fg_status fg_forest_from_tree(const fg_batch_desc *batch, fg_forest *out);
void fg_forest_free(fg_forest *f);

#endif /* FG_FOREST_H */
