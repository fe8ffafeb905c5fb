/*
 * The DESIGN.md benchmark workloads W1..W5 as test batches, shared by the benchmark
 * (perf/) and the tests (tests/plan checks them at small scale against the reference).
 * Sharing is expressed as engines express it: identical page ids in the block tables.
 */
#ifndef FGT_WORKLOADS_H
#define FGT_WORKLOADS_H

#include <stdint.h>

#include "fgtest.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fgt_workload_id {
    FGT_W1_N16 = 0, /* parallel sampling: MHA 32/32, one 8192-token prompt, 16 x 256 own */
    FGT_W1_N32,     /* the same with 32 samples */
    FGT_W2,         /* document QA: GQA 32/8, 8 docs x 4096 shared by 16 each, 512 own */
    FGT_W3,         /* three levels: GQA 32/8, 2048 shared by 64, 4 groups of 16 share 2048 more, 256 own */
    FGT_W4,         /* no sharing: GQA 32/8, 64 requests, own lengths 1024..8192 */
    FGT_W5,         /* few-shot: GQA 32/8, one 1024 prefix shared by 256 requests, 64 own */
    FGT_NUM_WORKLOADS
} fgt_workload_id;

/* Short name ("W1 n=16", "W2", ...) and a one-line description; NULL for a bad id. */
const char *fgt_workload_name(int id);
const char *fgt_workload_desc(int id);

/* Build workload `id` (fp16, head_dim 128, page size 16, q_len 1). scale >= 1 divides
 * every token length (shared prefixes rounded up to whole pages, own lengths at least
 * 1) and the counts that do not define the workload: W2's documents (at least 2), W4's
 * batch (at least 8) and W5's requests (at least 16); W1's n and W3's 64/4x16 shape are
 * kept. Page ids are allocated node by node, in order. attn is filled (all KV heads,
 * scale 0 = 1/sqrt(128)). Returns 0 on success. */
int fgt_batch_workload(int id, int32_t scale, fg_attn_desc *attn, fgt_batch *out);

#ifdef __cplusplus
}
#endif

#endif /* FGT_WORKLOADS_H */
