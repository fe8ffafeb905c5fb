/*
 * The one interface between host C and a GPU backend. hip/backend.hip fills an
 * fg_backend_ops for the CUDA (nvcc) or HIP (hipcc) build; host C never includes a
 * GPU header and only calls through these pointers. The CPU backend does not use
 * this table: it runs the same work list in src/cpu_backend.c.
 *
 * Every function returns an fg_status; on failure it writes one sentence into
 * msg (msg_len bytes, NUL-terminated) naming the runtime call and its error text.
 */
#ifndef FG_BACKEND_H
#define FG_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "forgeattn.h"
#include "worklist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_device_props {
    char name[128];
    char arch[32];          /* "sm_90", "gfx90a", ... */
    int32_t compute_units;  /* SMs / CUs */
    int32_t warp_size;      /* run-time query */
    int64_t l2_bytes;
    int64_t global_mem_bytes;
    int32_t max_shared_per_block; /* bytes, opt-in limit */
} fg_device_props;

typedef enum fg_copy_kind { FG_COPY_H2D = 0, FG_COPY_D2H = 1, FG_COPY_D2D = 2 } fg_copy_kind;

typedef struct fg_backend_ops {
    const char *name;        /* "cuda" or "hip" */
    fg_backend_kind kind;
    /* Open device `index`; fills props and an opaque state. FG_ERR_NO_DEVICE when none. */
    fg_status (*open)(int32_t index, fg_device_props *props, void **state, char *msg, size_t msg_len);
    void (*close)(void *state);
    /* Whether the kernels support this attention shape/dtype (FG_ERR_UNSUPPORTED + sentence). */
    fg_status (*supports)(void *state, const fg_attn_desc *attn, char *msg, size_t msg_len);
    /* Enqueue a copy on `stream` (async; src must stay valid until it completes). */
    fg_status (*copy)(void *state, void *dst, const void *src, size_t bytes, fg_copy_kind kind,
                      void *stream, char *msg, size_t msg_len);
    /* Launch the partial-attention pass and the merge pass of one run on `stream`. */
    fg_status (*run)(void *state, const fg_kernel_args *args, void *stream, char *msg, size_t msg_len);

    /* Used by tests, the benchmark and the calibration tool, never by fg_run. */
    fg_status (*alloc)(void *state, void **ptr, size_t bytes, char *msg, size_t msg_len);
    fg_status (*free_)(void *state, void *ptr, char *msg, size_t msg_len);
    fg_status (*pinned_alloc)(void *state, void **ptr, size_t bytes, char *msg, size_t msg_len);
    fg_status (*pinned_free)(void *state, void *ptr, char *msg, size_t msg_len);
    fg_status (*synchronize)(void *state, void *stream, char *msg, size_t msg_len);
    fg_status (*memset_)(void *state, void *ptr, int value, size_t bytes, void *stream, char *msg,
                         size_t msg_len);
    /* Time `reps` calls of fn(arg) on `stream` with events: median microseconds per call.
     * queued = 0: each call starts from an idle device, so the time includes the host's
     * submission of fn's launches; queued = 1: a spin kernel holds the stream until the
     * call is fully submitted, so the time is the device's alone (a stream running ahead). */
    fg_status (*time_us)(void *state, void (*fn)(void *), void *arg, int reps, void *stream,
                         int queued, double *median_us, char *msg, size_t msg_len);
    /* Measure the matrix units' rate (fp16 inputs, fp32 accumulation) with a kernel that keeps
     * its operands in registers: the ceiling that benchmark floors use, TFLOP/s. May be NULL. */
    fg_status (*matrix_tflops)(void *state, double *tflops, char *msg, size_t msg_len);
} fg_backend_ops;

/* Defined by hip/backend.hip when a GPU backend is compiled in (FG_HAVE_CUDA or FG_HAVE_HIP);
 * src/backend_none.c returns NULL otherwise. */
const fg_backend_ops *fg_gpu_backend_ops(void);

#ifdef __cplusplus
}
#endif

#endif /* FG_BACKEND_H */
