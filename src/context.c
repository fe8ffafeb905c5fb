/* Contexts: backend choice, device properties, calibration table, CPU thread pool. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calibration.h"
#include "internal.h"

#ifndef FG_CALIBRATION_DIR
#define FG_CALIBRATION_DIR ""
#endif
#ifndef FG_SOURCE_CALIBRATION_DIR
#define FG_SOURCE_CALIBRATION_DIR ""
#endif

#define FG_MAX_THREADS 1024

fg_status fg_context_options_init(fg_context_options *opts) {
    if (!opts) return fg_fail(FG_ERR_NULL_POINTER, "fg_context_options_init: opts is NULL");
    memset(opts, 0, sizeof *opts);
    opts->backend = FG_BACKEND_AUTO;
    return FG_SUCCESS;
}

static fg_status validate_options(const fg_context_options *o) {
    if ((int)o->backend < (int)FG_BACKEND_AUTO || (int)o->backend > (int)FG_BACKEND_HIP)
        return fg_fail(FG_ERR_INVALID_VALUE,
                       "fg_context_create: opts->backend = %d is not an fg_backend_kind (0..3)",
                       (int)o->backend);
    if (o->device_index < 0)
        return fg_fail(FG_ERR_INVALID_VALUE, "fg_context_create: opts->device_index = %d is negative",
                       o->device_index);
    if (o->num_threads < 0 || o->num_threads > FG_MAX_THREADS)
        return fg_fail(FG_ERR_INVALID_VALUE,
                       "fg_context_create: opts->num_threads = %d is outside 0..%d", o->num_threads,
                       FG_MAX_THREADS);
    return FG_SUCCESS;
}

/* Calibration: an explicit path (options, then FG_CALIBRATION) must load; a table found
 * by searching is used when it loads and skipped (with the reason kept) when it does not;
 * otherwise the compiled-in defaults for the architecture. */
static fg_status load_calibration(fg_context ctx, const fg_context_options *o) {
    const fg_device_props *d = &ctx->props;
    fg_cost_defaults(d->arch, d->compute_units, d->warp_size, &ctx->cost);
    const char *path = o->calibration_path;
    if (!path || !*path) path = getenv("FG_CALIBRATION");
    if (path && *path) {
        fg_cost_params p;
        fg_status st = fg_calibration_load(path, &p);
        if (st != FG_SUCCESS) return st;
        ctx->cost = p;
        snprintf(ctx->calibration_source, sizeof ctx->calibration_source, "%.250s", path);
        ctx->calibration_measured = p.measured;
        return FG_SUCCESS;
    }
    const char *dirs[2] = {FG_CALIBRATION_DIR, FG_SOURCE_CALIBRATION_DIR};
    char found[512];
    char skipped[160] = "";
    for (int i = 0; i < 2; i++) {
        if (!dirs[i][0]) continue;
        if (!fg_calibration_find(dirs[i], d->arch, d->compute_units, found, sizeof found)) continue;
        fg_cost_params p;
        if (fg_calibration_load(found, &p) == FG_SUCCESS) {
            ctx->cost = p;
            snprintf(ctx->calibration_source, sizeof ctx->calibration_source, "%.250s", found);
            ctx->calibration_measured = p.measured;
            fg_clear_error();
            return FG_SUCCESS;
        }
        snprintf(skipped, sizeof skipped, " (refused %.120s)", found);
    }
    fg_clear_error();
    snprintf(ctx->calibration_source, sizeof ctx->calibration_source,
             "built-in defaults for %s%s", d->arch, skipped);
    ctx->calibration_measured = 0;
    return FG_SUCCESS;
}

static fg_status open_gpu(fg_context ctx, const fg_context_options *o, int required) {
    const fg_backend_ops *ops = fg_gpu_backend_ops();
    if (!ops || (o->backend != FG_BACKEND_AUTO && ops->kind != o->backend)) {
        if (!required) return FG_ERR_NO_DEVICE;
        return fg_fail(FG_ERR_NO_DEVICE, "fg_context_create: opts->backend = %s, but this build of "
                       "forgeattn has no such backend (built with: %s)",
                       o->backend == FG_BACKEND_CUDA ? "FG_BACKEND_CUDA" : "FG_BACKEND_HIP",
                       ops ? ops->name : "cpu only");
    }
    char msg[256] = "";
    fg_status st = ops->open(o->device_index, &ctx->props, &ctx->gpu_state, msg, sizeof msg);
    if (st != FG_SUCCESS) {
        if (!required) return st;
        return fg_fail(st, "fg_context_create: %s", msg);
    }
    ctx->gpu = ops;
    ctx->kind = ops->kind;
    return FG_SUCCESS;
}

fg_status fg_context_create(const fg_context_options *opts, fg_context *out) {
    if (!out) return fg_fail(FG_ERR_NULL_POINTER, "fg_context_create: ctx (output pointer) is NULL");
    fg_context_options o;
    if (opts) o = *opts;
    else fg_context_options_init(&o);
    fg_status st = validate_options(&o);
    if (st != FG_SUCCESS) return st;

    fg_context ctx = calloc(1, sizeof *ctx);
    if (!ctx) return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_context_create: out of host memory");
    if (pthread_mutex_init(&ctx->buf_lock, NULL) != 0) {
        free(ctx);
        return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_context_create: cannot create a mutex");
    }

    if (o.backend == FG_BACKEND_CUDA || o.backend == FG_BACKEND_HIP) {
        st = open_gpu(ctx, &o, 1);
        if (st != FG_SUCCESS) { pthread_mutex_destroy(&ctx->buf_lock); free(ctx); return st; }
    } else if (o.backend == FG_BACKEND_AUTO) {
        if (open_gpu(ctx, &o, 0) != FG_SUCCESS) { ctx->gpu = 0; ctx->gpu_state = 0; }
        fg_clear_error();
    }
    if (!ctx->gpu) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        int32_t threads = o.num_threads ? o.num_threads : (int32_t)(n > 0 ? (n > 256 ? 256 : n) : 1);
        ctx->kind = FG_BACKEND_CPU;
        ctx->num_threads = threads;
        snprintf(ctx->props.name, sizeof ctx->props.name, "cpu (%d threads)", threads);
        snprintf(ctx->props.arch, sizeof ctx->props.arch, "cpu");
        ctx->props.compute_units = threads;
        ctx->props.warp_size = 1;
        st = fg_thread_pool_create(threads, &ctx->pool);
        if (st != FG_SUCCESS) { pthread_mutex_destroy(&ctx->buf_lock); free(ctx); return st; }
    }
    st = load_calibration(ctx, &o);
    if (st != FG_SUCCESS) { fg_context_destroy(ctx); return st; }
    /* The table describes a device of this kind; the unit count is what we run on. */
    ctx->cost.compute_units = ctx->props.compute_units;
    if (ctx->cost.warp_size <= 0) ctx->cost.warp_size = ctx->props.warp_size;
    *out = ctx;
    return FG_SUCCESS;
}

/* ------------------------------------------------------------ plan buffer cache */

static void buf_release(const fg_buf_entry *e) {
    if (!e->ptr) return;
    if (e->ops) {
        char msg[256];
        e->ops->pinned_free(e->state, e->ptr, msg, sizeof msg);
    } else {
        free(e->ptr);
    }
}

fg_status fg_ctx_buf_take(fg_context ctx, size_t bytes, void **ptr, size_t *cap) {
    if (bytes == 0) bytes = 1;
    /* The smallest cached buffer of this allocator that holds `bytes` and is not more
     * than 4 times what is asked (a small plan does not pin down a big buffer). */
    pthread_mutex_lock(&ctx->buf_lock);
    int best = -1;
    for (int i = 0; i < FG_BUF_CACHE; i++) {
        const fg_buf_entry *e = &ctx->buf_cache[i];
        if (!e->ptr || e->ops != ctx->gpu || e->state != ctx->gpu_state) continue;
        if (e->bytes < bytes || e->bytes / 4 > bytes) continue;
        if (best < 0 || e->bytes < ctx->buf_cache[best].bytes) best = i;
    }
    if (best >= 0) {
        *ptr = ctx->buf_cache[best].ptr;
        *cap = ctx->buf_cache[best].bytes;
        memset(&ctx->buf_cache[best], 0, sizeof ctx->buf_cache[best]);
        pthread_mutex_unlock(&ctx->buf_lock);
        return FG_SUCCESS;
    }
    pthread_mutex_unlock(&ctx->buf_lock);
    if (ctx->gpu) {
        char msg[256] = "";
        void *p = NULL;
        fg_status st = ctx->gpu->pinned_alloc(ctx->gpu_state, &p, bytes, msg, sizeof msg);
        if (st != FG_SUCCESS) return fg_fail(st, "fg_plan_create: pinned host allocation failed: %s", msg);
        *ptr = p;
    } else {
        *ptr = malloc(bytes);
        if (!*ptr) return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_plan_create: out of host memory for the work list");
    }
    *cap = bytes;
    return FG_SUCCESS;
}

void fg_ctx_buf_give(fg_context ctx, void *ptr, size_t cap) {
    if (!ptr) return;
    fg_buf_entry in = {ptr, cap, ctx->gpu, ctx->gpu_state}, out;
    memset(&out, 0, sizeof out);
    pthread_mutex_lock(&ctx->buf_lock);
    /* An empty slot, else the oldest (slot 0; the others move down). */
    int slot = -1;
    for (int i = 0; i < FG_BUF_CACHE && slot < 0; i++)
        if (!ctx->buf_cache[i].ptr) slot = i;
    if (slot < 0) {
        out = ctx->buf_cache[0];
        memmove(&ctx->buf_cache[0], &ctx->buf_cache[1], sizeof(fg_buf_entry) * (FG_BUF_CACHE - 1));
        slot = FG_BUF_CACHE - 1;
    }
    ctx->buf_cache[slot] = in;
    pthread_mutex_unlock(&ctx->buf_lock);
    buf_release(&out);
}

fg_status fg_context_destroy(fg_context ctx) {
    if (!ctx) return FG_SUCCESS;
    for (int i = 0; i < FG_BUF_CACHE; i++) buf_release(&ctx->buf_cache[i]);
    pthread_mutex_destroy(&ctx->buf_lock);
    if (ctx->gpu) ctx->gpu->close(ctx->gpu_state);
    if (ctx->pool) fg_thread_pool_destroy(ctx->pool);
    free(ctx);
    return FG_SUCCESS;
}

fg_status fg_context_info_get(fg_context ctx, fg_context_info *info) {
    if (!ctx) return fg_fail(FG_ERR_NULL_POINTER, "fg_context_info_get: ctx is NULL");
    if (!info) return fg_fail(FG_ERR_NULL_POINTER, "fg_context_info_get: info is NULL");
    memset(info, 0, sizeof *info);
    info->backend = ctx->kind;
    snprintf(info->device_name, sizeof info->device_name, "%s", ctx->props.name);
    snprintf(info->arch, sizeof info->arch, "%s", ctx->props.arch);
    info->compute_units = ctx->props.compute_units;
    info->warp_size = ctx->props.warp_size;
    snprintf(info->calibration_source, sizeof info->calibration_source, "%s",
             ctx->calibration_source);
    info->calibration_measured = ctx->calibration_measured;
    return FG_SUCCESS;
}
