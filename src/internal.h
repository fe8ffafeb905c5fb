/* Library-internal declarations shared by the host C files. */
#ifndef FG_INTERNAL_H
#define FG_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "forgeattn.h"
#include "backend.h"
#include "cost_model.h"
#include "forest.h"
#include "worklist.h"

#define FG_ALIGN 256

/* Record a failure: formats the thread-local message and returns `status`. */
fg_status fg_fail(fg_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void fg_clear_error(void);

/* Keeps a hot loop out of a large caller: inlined there, its values compete with the
 * caller's for registers and spill (a compiler hint only; no effect on results). */
#if defined(__GNUC__)
#define FG_NOINLINE __attribute__((noinline))
#else
#define FG_NOINLINE
#endif

typedef struct fg_thread_pool fg_thread_pool;

/* A host buffer a destroyed plan gave back to its context, kept for the next plan that
 * fits in it (so that freeing a plan does not trim the heap under the next one). `ops`
 * is the backend that allocated it (NULL: malloc), `state` that backend's state. */
typedef struct fg_buf_entry {
    void *ptr;
    size_t bytes;
    const fg_backend_ops *ops;
    void *state;
} fg_buf_entry;
#define FG_BUF_CACHE 4

struct fg_context_s {
    fg_backend_kind kind;
    const fg_backend_ops *gpu; /* NULL for the CPU backend */
    void *gpu_state;
    fg_device_props props;
    fg_cost_params cost;       /* calibration table or built-in defaults */
    char calibration_source[256];
    int32_t calibration_measured;
    int32_t num_threads;       /* CPU backend workers (including the caller) */
    fg_thread_pool *pool;      /* CPU backend; NULL on GPU */
    pthread_mutex_t buf_lock;  /* guards buf_cache */
    fg_buf_entry buf_cache[FG_BUF_CACHE];
};

/* The plan: host copies of the descriptors, the forest, the host image of the work
 * list (exactly the bytes fg_plan_upload copies), and the stats. Immutable once built. */
struct fg_plan_s {
    fg_context ctx;
    fg_attn_desc attn;         /* normalised: kv_head_count and scale filled in */
    int32_t group;             /* query heads per KV head */
    int32_t num_requests;
    int32_t num_qtok;
    int32_t *q_indptr;         /* [R + 1] */
    int32_t *kv_len;           /* [R] */
    fg_forest forest;
    void *list;                /* host image of the lists, layout.list_bytes (pinned on GPU) */
    size_t list_cap;           /* bytes allocated at list (>= layout.list_bytes) */
    fg_work_layout layout;
    int32_t num_items, num_segs, num_rows, num_tasks, num_blocks, num_slots, num_merge;
    int32_t max_item_rows;
    fg_plan_stats stats;
    void *uploaded_workspace;  /* the workspace fg_plan_upload last filled */
};

/* Bytes of one element of a dtype. */
static inline int fg_dtype_size(fg_dtype t) { return t == FG_DTYPE_FP32 ? 4 : 2; }
static inline int64_t fg_align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

/* Plan buffers (src/context.c): take a buffer of at least `bytes` from the context's
 * cache (or allocate one: pinned through ctx->gpu on GPU contexts, malloc otherwise);
 * *cap receives its size. Give it back with fg_ctx_buf_give when the plan is destroyed;
 * the cache keeps a few and frees the rest (and all at fg_context_destroy). */
fg_status fg_ctx_buf_take(fg_context ctx, size_t bytes, void **ptr, size_t *cap);
void fg_ctx_buf_give(fg_context ctx, void *ptr, size_t cap);

/* CPU backend (src/cpu_backend.c). */
fg_status fg_thread_pool_create(int32_t num_threads, fg_thread_pool **pool);
void fg_thread_pool_destroy(fg_thread_pool *pool);
/* Run fn(arg, i, worker) for i in [0, n) on the pool's threads (the caller takes part as
 * worker 0; worker < num_threads); returns when all are done. */
void fg_thread_pool_run(fg_thread_pool *pool, int32_t n,
                        void (*fn)(void *arg, int32_t i, int32_t worker), void *arg);
/* Scratch bytes the CPU backend needs in the workspace for this plan. */
int64_t fg_cpu_scratch_bytes(const struct fg_plan_s *plan);
fg_status fg_cpu_run(fg_context ctx, const fg_kernel_args *args, int64_t scratch_stride);

#endif /* FG_INTERNAL_H */
