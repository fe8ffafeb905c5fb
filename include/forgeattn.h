/*
 * forgeattn — prefix-aware attention for the decode stage of LLM inference.
 *
 * The whole public C API. Conventions:
 *  - Every function returns an fg_status. On failure nothing the caller owns is
 *    modified, nothing leaks, and fg_last_error() holds one sentence naming the
 *    offending field and value (thread-local, valid until the next failing call on
 *    that thread).
 *  - Handles are opaque. A context owns a backend (CPU threads, or one GPU) and its
 *    calibration table; a plan owns the host-side description of one decode step.
 *  - Plan/run split: fg_plan_create does all the host work (prefix forest, task
 *    division, schedule); fg_plan_upload copies the plan's work list into a
 *    caller-owned workspace; fg_run only launches kernels. fg_run allocates nothing,
 *    never synchronises the host and can be captured in a CUDA/HIP graph.
 *  - Sizes are int32_t counts unless stated; strides are in elements (not bytes)
 *    and may be any positive value, so non-contiguous tensors are accepted.
 *  - LSE values are natural logarithms (FlashInfer uses base 2: multiply by ln 2 to
 *    convert theirs). A query row that sees no key gets LSE = -inf and O = 0.
 */
#ifndef FORGEATTN_H
#define FORGEATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FG_STATIC_DEFINE)
#define FG_API
#elif defined(_WIN32)
#ifdef FG_BUILDING_LIBRARY
#define FG_API __declspec(dllexport)
#else
#define FG_API __declspec(dllimport)
#endif
#else
#define FG_API __attribute__((visibility("default")))
#endif

/* ------------------------------------------------------------------ version */

#define FG_VERSION_MAJOR 0
#define FG_VERSION_MINOR 1
#define FG_VERSION_PATCH 0
/** Encoded as major * 10000 + minor * 100 + patch. */
#define FG_VERSION (FG_VERSION_MAJOR * 10000 + FG_VERSION_MINOR * 100 + FG_VERSION_PATCH)

/** Run-time version of the library that was linked (same encoding as FG_VERSION). */
FG_API int fg_version(void);
/** Run-time version as a static string, e.g. "0.1.0". */
FG_API const char *fg_version_string(void);

/* ------------------------------------------------------------------- status */

/** Status codes. Values are pinned: they never change between versions. */
typedef enum fg_status {
    FG_SUCCESS = 0,
    FG_ERR_NULL_POINTER = 1,       /**< a required pointer argument or field is NULL */
    FG_ERR_INVALID_VALUE = 2,      /**< a size or enum is negative, zero where it must not be, or unknown */
    FG_ERR_OVERFLOW = 3,           /**< sizes whose product or sum overflows the index types */
    FG_ERR_SHAPE_MISMATCH = 4,     /**< heads/dims/lengths inconsistent with each other */
    FG_ERR_PAGE_OUT_OF_RANGE = 5,  /**< a page id outside [0, num_pages) */
    FG_ERR_INVALID_TREE = 6,       /**< explicit tree: cycle, bad parent, path length != kv_len */
    FG_ERR_UNSUPPORTED = 7,        /**< valid request this backend/build cannot do (dtype, layout) */
    FG_ERR_OUT_OF_MEMORY = 8,      /**< a host allocation failed */
    FG_ERR_WORKSPACE_TOO_SMALL = 9,/**< the workspace given is smaller than fg_plan_workspace_size */
    FG_ERR_NOT_UPLOADED = 10,      /**< fg_run with a workspace the plan was not uploaded to */
    FG_ERR_NO_DEVICE = 11,         /**< a GPU backend was requested and none is present */
    FG_ERR_DEVICE = 12,            /**< a GPU runtime call failed (message has the runtime's text) */
    FG_ERR_CALIBRATION = 13,       /**< a calibration table is malformed (message names the line) */
    FG_ERR_IO = 14,                /**< a file could not be read or written */
    FG_ERR_INTERNAL = 15           /**< a bug in forgeattn: please report it */
} fg_status;

/** Static name of a status, e.g. "FG_ERR_NULL_POINTER". Never NULL. */
FG_API const char *fg_status_string(fg_status status);
/** Thread-local sentence describing the last failure on this thread ("" if none). */
FG_API const char *fg_last_error(void);

/* -------------------------------------------------------------------- enums */

typedef enum fg_dtype {
    FG_DTYPE_FP32 = 0,
    FG_DTYPE_FP16 = 1,
    FG_DTYPE_BF16 = 2
} fg_dtype;

/** Head layouts of "Hardware-Efficient Attention for Fast Decoding". */
typedef enum fg_layout {
    FG_LAYOUT_MHA = 0, /**< num_q_heads == num_kv_heads */
    FG_LAYOUT_GQA = 1, /**< num_q_heads a multiple of num_kv_heads */
    FG_LAYOUT_MQA = 2, /**< num_kv_heads == 1 */
    FG_LAYOUT_GTA = 3, /**< tied K/V state (not yet supported: FG_ERR_UNSUPPORTED) */
    FG_LAYOUT_MLA = 4, /**< latent cache (not yet supported: FG_ERR_UNSUPPORTED) */
    FG_LAYOUT_GLA = 5  /**< grouped latent cache (not yet supported: FG_ERR_UNSUPPORTED) */
} fg_layout;

typedef enum fg_backend_kind {
    FG_BACKEND_AUTO = 0, /**< the best present: a GPU if one is usable, else the CPU */
    FG_BACKEND_CPU = 1,
    FG_BACKEND_CUDA = 2,
    FG_BACKEND_HIP = 3
} fg_backend_kind;

/* ------------------------------------------------------------------ context */

typedef struct fg_context_s *fg_context;

typedef struct fg_context_options {
    fg_backend_kind backend;      /**< default FG_BACKEND_AUTO */
    int32_t device_index;         /**< GPU ordinal, default 0 */
    int32_t num_threads;          /**< CPU backend threads; 0 = number of online cores */
    const char *calibration_path; /**< calibration table file; NULL = FG_CALIBRATION env or built-in search */
} fg_context_options;

/** Fill opts with the defaults. */
FG_API fg_status fg_context_options_init(fg_context_options *opts);

/** Create a context. opts may be NULL (defaults). On success *ctx owns everything it made. */
FG_API fg_status fg_context_create(const fg_context_options *opts, fg_context *ctx);
/** Destroy a context. NULL is accepted and does nothing. Plans made from it must be destroyed first. */
FG_API fg_status fg_context_destroy(fg_context ctx);

typedef struct fg_context_info {
    fg_backend_kind backend;       /**< the backend actually chosen */
    char device_name[128];         /**< e.g. "NVIDIA H100 80GB HBM3" or "cpu" */
    char arch[32];                 /**< e.g. "sm_90", "gfx90a", "cpu" */
    int32_t compute_units;         /**< SMs / CUs / CPU threads */
    int32_t warp_size;             /**< 32, 64, or 1 for the CPU backend */
    char calibration_source[256];  /**< the table file loaded, or "built-in defaults for <arch>" */
    int32_t calibration_measured;  /**< 1 if the table was measured on such a device, 0 if estimated */
} fg_context_info;

/** Describe the context (backend, device, calibration table in use). */
FG_API fg_status fg_context_info_get(fg_context ctx, fg_context_info *info);

/* --------------------------------------------------------- plan descriptors */

typedef struct fg_attn_desc {
    int32_t num_q_heads;       /**< query heads in Q/O (all ranks together) */
    int32_t num_kv_heads;      /**< KV heads in the cache; num_q_heads % num_kv_heads == 0 */
    int32_t kv_head_begin;     /**< first KV head this plan covers (tensor parallelism) */
    int32_t kv_head_count;     /**< KV heads covered; 0 = all from kv_head_begin */
    int32_t head_dim_qk;       /**< Q/K head dimension; 1..256, multiple of 8 */
    int32_t head_dim_v;        /**< V/O head dimension; 1..256, multiple of 8 */
    fg_layout layout;          /**< must agree with the head counts */
    fg_dtype q_dtype;          /**< Q and O element type */
    fg_dtype kv_dtype;         /**< K/V cache element type */
    int32_t page_size;         /**< tokens per KV page, >= 1 */
    float scale;               /**< softmax scale; 0 = 1/sqrt(head_dim_qk) */
} fg_attn_desc;

/** Optional explicit prefix tree. Request r's KV sequence is the concatenation of the
 *  nodes on the path root -> request_node[r]; node tokens are read through the block
 *  table of the lowest-numbered request under that node (the caller asserts that the
 *  KV of a shared node is identical for every request under it). */
typedef struct fg_tree_desc {
    int32_t num_nodes;
    const int32_t *parent;       /**< [num_nodes]; -1 for a root */
    const int32_t *length;       /**< [num_nodes]; tokens in the node, >= 1 */
    const int32_t *request_node; /**< [num_requests]; the node where request r's KV ends */
} fg_tree_desc;

/** Batch flags. */
#define FG_BATCH_NO_SHARING 0x1u    /**< treat every request alone (the FlashDecoding-class path) */
#define FG_BATCH_FORCE_SHARING 0x2u /**< use the shared-prefix plan even where the cost model
                                         predicts the plain path to be faster (tests, studies) */

/** One decode step. Request r has q_len[r] new query tokens (their Q rows are
 *  consecutive, request after request) and kv_len[r] cached tokens, the new ones
 *  included; new token i sees KV positions < kv_len[r] - q_len[r] + i + 1.
 *  Its block table is CSR: pages page_indices[page_indptr[r] .. page_indptr[r+1]),
 *  exactly ceil(kv_len[r] / page_size) of them. Sharing is detected from identical
 *  page ids at identical positions unless an explicit tree is given. */
typedef struct fg_batch_desc {
    int32_t num_requests;         /**< >= 1 */
    const int32_t *q_len;         /**< [num_requests], each >= 1 */
    const int32_t *kv_len;        /**< [num_requests], each >= q_len[r] */
    const int32_t *page_indptr;   /**< [num_requests + 1], page_indptr[0] == 0 */
    const int32_t *page_indices;  /**< [page_indptr[num_requests]] */
    int32_t num_pages;            /**< pages in the cache; every page id must be < num_pages */
    const fg_tree_desc *tree;     /**< optional; NULL = detect from the block tables */
    uint32_t flags;               /**< FG_BATCH_* */
} fg_batch_desc;

/** Convert a vLLM-style dense block table [num_requests][max_pages] (row stride
 *  `stride` elements) to CSR. indptr needs num_requests + 1 entries, indices
 *  *indices_capacity; on FG_ERR_WORKSPACE_TOO_SMALL *indices_capacity holds the count needed.
 *  With indptr == indices == NULL only the needed count is returned. */
FG_API fg_status fg_block_table_to_csr(int32_t num_requests, const int32_t *kv_len,
                                       int32_t page_size, const int32_t *block_table,
                                       int64_t stride, int32_t max_pages, int32_t *indptr,
                                       int32_t *indices, int64_t *indices_capacity);

/* --------------------------------------------------------------------- plan */

typedef struct fg_plan_s *fg_plan;

/** Build the plan of one decode step on the host. Copies everything it needs from
 *  the descriptors (they may be freed afterwards). */
FG_API fg_status fg_plan_create(fg_context ctx, const fg_attn_desc *attn,
                                const fg_batch_desc *batch, fg_plan *plan);
/** Destroy a plan. NULL is accepted. */
FG_API fg_status fg_plan_destroy(fg_plan plan);

/** Bytes of workspace fg_plan_upload/fg_run need (work list + partial states),
 *  rounded up to 256. Device memory for a GPU context, host memory for the CPU. */
FG_API fg_status fg_plan_workspace_size(fg_plan plan, size_t *bytes);

/** Copy the plan's work list into the workspace (asynchronously on `stream` for a GPU
 *  context; the plan must outlive that copy). Needed once per plan and workspace
 *  before fg_run. */
FG_API fg_status fg_plan_upload(fg_plan plan, void *workspace, size_t workspace_bytes,
                                void *stream);

typedef struct fg_plan_stats {
    int32_t num_requests;
    int32_t num_q_tokens;
    int32_t num_nodes;            /**< nodes of the prefix forest */
    int32_t num_roots;
    int32_t max_depth;            /**< nodes on the longest root-to-node path */
    int64_t unique_kv_tokens;     /**< distinct KV tokens read once (sum of node lengths) */
    int64_t nonshared_kv_tokens;  /**< sum of kv_len: what a non-sharing kernel reads */
    int64_t unique_kv_bytes;      /**< K+V bytes of the unique tokens, covered heads only */
    int64_t nonshared_kv_bytes;   /**< K+V bytes a non-sharing kernel reads */
    int64_t qo_bytes;             /**< Q read + O written */
    int64_t partial_bytes;        /**< partial states written and read back */
    int32_t num_items;            /**< work items (KV range x rows), per KV head */
    int32_t num_tasks;            /**< items x KV heads */
    int32_t num_blocks;           /**< persistent blocks (GPU) / workers (CPU) */
    int32_t num_partials;         /**< partial-state rows (per head group) */
    int32_t sharing_used;         /**< 1: shared-prefix plan; 0: plain split-KV */
    double predicted_us;          /**< cost model's estimate of the chosen plan */
    double predicted_nonshared_us;/**< cost model's estimate without sharing; where the plain
                                       plan provably cannot win it is not built and this is
                                       a lower bound of its estimate */
    double predicted_floor_us;    /**< max(bytes / bandwidth, flops / matrix rate) */
    double imbalance;             /**< max over mean of predicted per-block time */
    size_t workspace_bytes;
} fg_plan_stats;

FG_API fg_status fg_plan_stats_get(fg_plan plan, fg_plan_stats *stats);

/* ---------------------------------------------------------------------- run */

/** Tensors of one step. Strides are in elements and may be any positive value.
 *  Q:  [num_q_tokens][num_q_heads][head_dim_qk]      (q_dtype)
 *  K:  [num_pages][page_size][num_kv_heads][head_dim_qk] addressed as
 *      page * k_stride_page + slot * k_stride_token + head * k_stride_head + d
 *      (NHD and HND both fit), kv_dtype; V likewise with head_dim_v.
 *  O:  [num_q_tokens][num_q_heads][head_dim_v]        (q_dtype)
 *  LSE (optional, may be NULL): float [num_q_tokens][num_q_heads], natural log.
 *  Only the heads of the plan's KV range are read and written. */
typedef struct fg_tensors {
    const void *q;
    int64_t q_stride_token, q_stride_head;
    const void *k_cache;
    int64_t k_stride_page, k_stride_token, k_stride_head;
    const void *v_cache;
    int64_t v_stride_page, v_stride_token, v_stride_head;
    void *o;
    int64_t o_stride_token, o_stride_head;
    float *lse;
    int64_t lse_stride_token, lse_stride_head;
    float scale_override;         /**< 0 = the plan's scale; per-run, needs no re-plan */
} fg_tensors;

/** Fill strides for contiguous tensors: Q/O [tokens][heads][dim], K/V in NHD
 *  [pages][page_size][kv_heads][dim], LSE [tokens][heads]. Pointers are left as they were. */
FG_API fg_status fg_tensors_default_strides(const fg_attn_desc *attn, fg_tensors *t);

/** Run the planned step. The workspace must have been given to fg_plan_upload.
 *  stream: cudaStream_t / hipStream_t (NULL = default stream); ignored on the CPU,
 *  where the call returns when the output is written. */
FG_API fg_status fg_run(fg_plan plan, const fg_tensors *tensors, void *workspace,
                        size_t workspace_bytes, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* FORGEATTN_H */
