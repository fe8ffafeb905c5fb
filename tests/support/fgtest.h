/*
 * Test support shared by the test suite, the GPU tests and the benchmark's checks:
 * random prefix-sharing batches, random tensors, the double-precision reference and
 * the comparison with stated tolerances. Owned by the tests; never linked into the library.
 */
#ifndef FGTEST_H
#define FGTEST_H

#include <stddef.h>
#include <stdint.h>

#include "forgeattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Deterministic PRNG (splitmix64 / xoshiro-style); one per test so failures replay. */
typedef struct fgt_rng { uint64_t s; } fgt_rng;
void fgt_rng_seed(fgt_rng *r, uint64_t seed);
uint64_t fgt_rng_u64(fgt_rng *r);
int32_t fgt_rng_range(fgt_rng *r, int32_t lo, int32_t hi); /* uniform in [lo, hi] */
double fgt_rng_uniform(fgt_rng *r);                       /* [0, 1) */

/* A batch with owned arrays; desc points into them. */
typedef struct fgt_batch {
    fg_batch_desc desc;
    int32_t *q_len, *kv_len, *page_indptr, *page_indices;
    int32_t num_q_tokens;
    /* Optional explicit tree (desc.tree points at tree when has_tree). */
    fg_tree_desc tree;
    int32_t *tree_parent, *tree_length, *tree_request_node;
    int has_tree;
    /* Added by the generator (zero for fgt_batch_from_arrays). page_size the batch was
     * made for (0 = unknown). Copy-on-write aliases: slots [0, alias_slots[i]) of page
     * alias_dst[i] hold the same K/V as those of alias_src[i]; fgt_tensors_random copies
     * them in order i = 0.. (a copy may itself be the source of a later one). */
    int32_t page_size;
    int32_t num_alias;
    int32_t *alias_dst, *alias_src, *alias_slots;
} fgt_batch;

/* Shape of a random prefix forest. Node lengths are drawn from [min_node_len, max_node_len]
 * and are usually NOT multiples of page_size; a node that does not end on a page boundary
 * is made page-aligned for its children by the generator (children start on a fresh page,
 * so the parent's partly filled last page is shared: exactly what engines do). */
typedef struct fgt_forest_params {
    int32_t num_roots;      /* >= 1 */
    int32_t max_depth;      /* 1..6 */
    int32_t max_fanout;     /* 1..64 */
    int32_t min_node_len, max_node_len;
    int32_t page_size;
    int32_t max_q_len;      /* q_len drawn from [1, max_q_len] */
    int32_t max_requests;   /* cap on the batch size */
    int32_t with_tree;      /* also fill the explicit tree describing the same forest */
} fgt_forest_params;

/* Random forest batch; page ids are shuffled over a cache of desc.num_pages pages. 0 on success. */
int fgt_batch_random(fgt_rng *rng, const fgt_forest_params *p, fgt_batch *out);
/* Batch from explicit arrays (copied); page tables must be CSR-exact. 0 on success. */
int fgt_batch_from_arrays(int32_t n, const int32_t *q_len, const int32_t *kv_len,
                          const int32_t *indptr, const int32_t *indices, int32_t num_pages,
                          fgt_batch *out);
void fgt_batch_free(fgt_batch *b);

/* Host tensors for a batch and attention shape: Q, K cache, V cache filled with random
 * values (uniform in [-1, 1], never all zero), rounded to their dtypes; O poisoned (NaN
 * pattern) and LSE poisoned. Strides contiguous unless `pad` > 0, which adds `pad`
 * elements of padding per token/head row (non-contiguous strides). */
typedef struct fgt_tensors {
    fg_tensors t;           /* pointers + strides into the buffers below */
    void *q, *k, *v, *o;
    float *lse;
    size_t q_elems, k_elems, v_elems, o_elems, lse_elems;
} fgt_tensors;
int fgt_tensors_random(fgt_rng *rng, const fg_attn_desc *a, const fgt_batch *b, int pad,
                       fgt_tensors *out);
void fgt_tensors_poison_output(const fg_attn_desc *a, fgt_tensors *t);
void fgt_tensors_free(fgt_tensors *t);

/* Reference: per request, per query token, per head over the whole KV, in double, from
 * the same rounded inputs. o_ref: [num_q_tokens][num_q_heads][head_dim_v],
 * lse_ref: [num_q_tokens][num_q_heads] (natural log). Only the heads of the
 * attention's KV-head range are computed; others are left as NaN. */
int fgt_reference(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                  double *o_ref, double *lse_ref);

/* Tolerances, stated once:
 *  fp32: 1e-4 abs on O (fp32 accumulation over up to ~10^5 keys), 1e-4 on LSE.
 *  fp16: output rounding is 2^-11 relative (~4.9e-4) of |O| <= 1, plus fp32 accumulation:
 *        2e-3 abs on O, 1e-3 on LSE.
 *  bf16: output rounding is 2^-8 relative (~3.9e-3): 1e-2 abs on O, 1e-3 on LSE.
 * Any NaN/inf in O, or a NaN LSE, fails. Returns 0 if within tolerance; fills the
 * worst error and its location into msg (for assertion messages). */
typedef struct fgt_cmp {
    double max_abs_o, max_abs_lse;
    int64_t bad_index;  /* first element over tolerance, -1 if none */
    char msg[256];
} fgt_cmp;
double fgt_tolerance_o(fg_dtype q_dtype);
double fgt_tolerance_lse(fg_dtype q_dtype);
int fgt_compare(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                const double *o_ref, const double *lse_ref, fgt_cmp *cmp);

/* A CPU-backend context with `threads` workers (tests pin the count so that plans, and so
 * results, do not depend on the machine). */
fg_status fgt_cpu_context(int32_t threads, fg_context *ctx);

/* Convenience: create a plan, size and upload the workspace (host memory for a CPU
 * context; the GPU variant lives in tests/gpu), run, destroy. Returns the fg_status. */
fg_status fgt_run_cpu(fg_context ctx, const fg_attn_desc *a, const fgt_batch *b,
                      fgt_tensors *t, fg_plan_stats *stats_out);

/* ------------------------------------------------------------- additions */

/* Extra generator controls (zero = the plain fgt_batch_random behaviour). */
typedef struct fgt_forest_opts {
    /* Every interior node ends on a page boundary and has >= 2 children or a request
     * ending at it: the explicit tree is then exactly the forest that block-table
     * detection must find (used by the tree-vs-detection tests). */
    int32_t canonical;
    /* Rough cap on the reference's work (sum over requests of q_len * kv_len); the
     * generator redraws (deterministically) until the batch fits. 0 = no cap. */
    int64_t max_work;
    /* Percent chance that a node above max_depth branches; 0 = drawn per batch (40..95). */
    int32_t expand_pct;
} fgt_forest_opts;
int fgt_batch_random_ex(fgt_rng *rng, const fgt_forest_params *p, const fgt_forest_opts *o,
                        fgt_batch *out);

/* Tensor layout controls for fgt_tensors_random_ex. */
typedef struct fgt_tensor_opts {
    int32_t pad;  /* extra elements per token/head row (non-contiguous strides) */
    int32_t hnd;  /* K/V cache as [page][kv_head][slot][dim] instead of NHD */
    int32_t no_lse; /* leave t.lse NULL (no LSE output) */
} fgt_tensor_opts;
int fgt_tensors_random_ex(fgt_rng *rng, const fg_attn_desc *a, const fgt_batch *b,
                          const fgt_tensor_opts *o, fgt_tensors *out);

/* Fresh random Q/K/V values (same shapes/strides, aliases re-applied) and poisoned
 * outputs: lets a test reuse buffers for a new check. */
void fgt_tensors_refill(fgt_rng *rng, const fg_attn_desc *a, const fgt_batch *b, fgt_tensors *t);

/* 1 if every O element (and LSE entry, if t.lse) of heads OUTSIDE the attention's
 * KV-head range still holds the poison pattern; 0 otherwise (msg says where). */
int fgt_outside_untouched(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                          char *msg, size_t msg_len);

/* Reference of one request only (for the benchmark's sampled checks): o_ref / lse_ref
 * are the full-size arrays of fgt_reference; only request r's rows are written. */
int fgt_reference_request(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                          int32_t r, double *o_ref, double *lse_ref);
/* Compare only request r's rows (same tolerances as fgt_compare). */
int fgt_compare_request(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                        int32_t r, const double *o_ref, const double *lse_ref, fgt_cmp *cmp);

/* The forest block-table detection must find, computed independently (sorted slot
 * strings + a radix tree): nodes at branch points and where requests end. */
typedef struct fgt_forest_expect {
    int32_t num_nodes, num_roots, max_depth;
    int64_t unique_tokens, total_tokens;
} fgt_forest_expect;
int fgt_expected_forest(const fgt_batch *b, int32_t page_size, fgt_forest_expect *out);

/* Physical slot (page * page_size + slot) of request r's KV position pos. */
static inline int64_t fgt_slot(const fgt_batch *b, int32_t page_size, int32_t r, int32_t pos) {
    return (int64_t)b->page_indices[b->page_indptr[r] + pos / page_size] * page_size +
           pos % page_size;
}

/* Plain LPT, written independently of src/schedule.c, for comparison: task t costs
 * cost[t / per] (per >= 1 equal tasks per entry, n entries); tasks largest first, each
 * to the least loaded of min(tasks, blocks) blocks (lowest index on ties). Returns the
 * makespan, or -1 when out of memory. O(tasks x blocks). */
double fgt_lpt_makespan(const double *cost, int32_t n, int32_t per, int32_t blocks);

/* Elements of a tensor (for buffer sizes): number of heads the attention covers. */
int32_t fgt_kv_head_count(const fg_attn_desc *a);

#ifdef __cplusplus
}
#endif

#endif /* FGTEST_H */
