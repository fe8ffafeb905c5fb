/*
 * forgeattn-calibrate: measures the cost-model parameters of the present backend (the
 * GPU through fg_gpu_backend_ops(), else the CPU backend) and writes a calibration
 * table (cost_model/FORMAT.md).
 *
 *   forgeattn-calibrate [-o TABLE] [--threads N]      measure and write a table
 *   forgeattn-calibrate --check TABLE [--scale S]      W1..W5: predicted vs measured
 *   forgeattn-calibrate --plan-time [--reps N] [--arch ARCH [--units N]]
 *                                                     median fg_plan_create time; --arch plans
 *                                                     as that GPU's defaults (132 units unless
 *                                                     --units) would, without a GPU
 *   forgeattn-calibrate --plans TABLE                  W1..W5 planned with TABLE as its GPU would
 *                                                     (no GPU needed): tasks, partials, predictions
 *   forgeattn-calibrate --defaults ARCH UNITS -o TABLE [--device NAME] [--source TEXT]
 *                                                     write the built-in (estimated) table
 *
 * Fits (each probe is a plan on a synthetic batch, run through fg_run like a user would):
 *  copy_gbs       device-to-device copy (GPU) / memcpy (CPU) of a large buffer, read +
 *                 write bytes over time;
 *  launch_us      a one-token plan (one task, one launch);
 *  task_fixed_us  many one-page requests: (time - launch) x blocks / tasks;
 *  gather_eff     a memory-bound split-KV plan: KV bytes / time over copy_gbs;
 *  mma_tflops_f16 one shared prefix applied to 4..256 rows: the best achieved rate
 *                 (also reported per row count); fma_tflops_f32 = the same on the CPU
 *                 (it has no matrix units), scaled from the defaults on a GPU;
 *  merge_us_per_row  ~600 bytes per partial row at the measured copy bandwidth.
 * Tile shapes and resident blocks are the kernels' (hip/tuning.h, via the defaults).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calibration.h"
#include "cost_model.h"
#include "divide.h"
#include "fgtest.h"
#include "internal.h"
#include "pack.h"
#include "schedule.h"
#include "workloads.h"

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "forgeattn-calibrate: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

static void check(fg_status st, const char *what) {
    if (st != FG_SUCCESS) die("%s: %s: %s", what, fg_status_string(st), fg_last_error());
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void progress(int step, int steps, const char *fmt, ...) {
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\r[%d/%d] %-100s", step, steps, line);
    if (step == steps) fprintf(stderr, "\n");
    fflush(stderr);
}

/* ------------------------------------------------------------------ timing a plan */

typedef struct env {
    fg_context ctx;
    int gpu;
    int reps;
} env;

typedef struct gpu_arg {
    fg_plan plan;
    fg_tensors t;
    void *ws;
    size_t ws_bytes;
    fg_status st;
} gpu_arg;

static void gpu_run_fn(void *p) {
    gpu_arg *g = p;
    fg_status st = fg_run(g->plan, &g->t, g->ws, g->ws_bytes, NULL);
    if (st != FG_SUCCESS && g->st == FG_SUCCESS) g->st = st;
}

#define GPU(fn, ...)                                                                   \
    do {                                                                               \
        char msg_[256] = "";                                                           \
        fg_status st_ = e->ctx->gpu->fn(e->ctx->gpu_state, __VA_ARGS__, msg_, sizeof msg_); \
        if (st_ != FG_SUCCESS) die("%s: %s", #fn, msg_);                               \
    } while (0)

/* Median microseconds of fg_run for this batch; stats of the plan it made. */
static double time_batch(env *e, const fg_attn_desc *a, const fgt_batch *b, fg_plan_stats *stats) {
    fg_plan plan;
    check(fg_plan_create(e->ctx, a, &b->desc, &plan), "fg_plan_create");
    check(fg_plan_stats_get(plan, stats), "fg_plan_stats_get");
    size_t ws_bytes;
    check(fg_plan_workspace_size(plan, &ws_bytes), "fg_plan_workspace_size");
    double us;
    if (!e->gpu) {
        fgt_rng rng;
        fgt_rng_seed(&rng, 1);
        fgt_tensors t;
        if (fgt_tensors_random(&rng, a, b, 0, &t)) die("out of host memory for the probe tensors");
        void *ws = aligned_alloc(256, (ws_bytes + 255) / 256 * 256);
        if (!ws) die("out of host memory for the workspace");
        check(fg_plan_upload(plan, ws, ws_bytes, NULL), "fg_plan_upload");
        check(fg_run(plan, &t.t, ws, ws_bytes, NULL), "fg_run (warm-up)");
        double *v = malloc(sizeof(double) * (size_t)e->reps);
        for (int i = 0; i < e->reps; i++) {
            double t0 = now_us();
            check(fg_run(plan, &t.t, ws, ws_bytes, NULL), "fg_run");
            v[i] = now_us() - t0;
        }
        us = median(v, e->reps);
        free(v);
        free(ws);
        fgt_tensors_free(&t);
    } else {
        int64_t R = b->desc.num_requests, Q = 0;
        for (int64_t r = 0; r < R; r++) Q += b->q_len[r];
        size_t qb = (size_t)Q * a->num_q_heads * a->head_dim_qk * 2;
        size_t ob = (size_t)Q * a->num_q_heads * a->head_dim_v * 2;
        size_t kb = (size_t)b->desc.num_pages * a->page_size * a->num_kv_heads * a->head_dim_qk * 2;
        size_t vb = (size_t)b->desc.num_pages * a->page_size * a->num_kv_heads * a->head_dim_v * 2;
        gpu_arg g;
        memset(&g, 0, sizeof g);
        void *q, *k, *v, *o;
        GPU(alloc, &q, qb);
        GPU(alloc, &k, kb);
        GPU(alloc, &v, vb);
        GPU(alloc, &o, ob);
        GPU(alloc, &g.ws, ws_bytes);
        GPU(memset_, q, 0, qb, NULL);
        GPU(memset_, k, 0, kb, NULL);
        GPU(memset_, v, 0, vb, NULL);
        check(fg_tensors_default_strides(a, &g.t), "fg_tensors_default_strides");
        g.t.q = q;
        g.t.k_cache = k;
        g.t.v_cache = v;
        g.t.o = o;
        g.plan = plan;
        g.ws_bytes = ws_bytes;
        check(fg_plan_upload(plan, g.ws, ws_bytes, NULL), "fg_plan_upload");
        gpu_run_fn(&g);
        GPU(synchronize, NULL);
        GPU(time_us, gpu_run_fn, &g, e->reps, NULL, 0, &us);
        check(g.st, "fg_run");
        GPU(free_, q);
        GPU(free_, k);
        GPU(free_, v);
        GPU(free_, o);
        GPU(free_, g.ws);
    }
    fg_plan_destroy(plan);
    return us;
}

/* n requests sharing a `prefix`-token prefix, each with `own` tokens after it. */
static void shared_batch(int32_t n, int32_t prefix, int32_t own, int32_t ps, fgt_batch *out) {
    int32_t *q = malloc(sizeof(int32_t) * (size_t)n), *kv = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *ip = malloc(sizeof(int32_t) * (size_t)(n + 1));
    int32_t pp = (prefix + ps - 1) / ps, op = (own + ps - 1) / ps;
    int32_t *ix = malloc(sizeof(int32_t) * (size_t)n * (size_t)(pp + op + 1));
    int32_t at = 0, next = pp;
    /* a prefix that is not page-aligned is copied per request (copy-on-write) */
    int shared_pages = prefix % ps ? pp - 1 : pp;
    for (int32_t r = 0; r < n; r++) {
        q[r] = 1;
        kv[r] = prefix + own;
        ip[r] = at;
        int32_t np = (kv[r] + ps - 1) / ps;
        for (int32_t j = 0; j < np; j++) ix[at++] = j < shared_pages ? j : next++;
    }
    ip[n] = at;
    if (fgt_batch_from_arrays(n, q, kv, ip, ix, next, out)) die("fgt_batch_from_arrays failed");
    free(q);
    free(kv);
    free(ip);
    free(ix);
}

static fg_attn_desc gqa(int32_t qh, int32_t kvh) {
    fg_attn_desc a;
    memset(&a, 0, sizeof a);
    a.num_q_heads = qh;
    a.num_kv_heads = kvh;
    a.head_dim_qk = a.head_dim_v = 128;
    a.layout = qh == kvh ? FG_LAYOUT_MHA : (kvh == 1 ? FG_LAYOUT_MQA : FG_LAYOUT_GQA);
    a.q_dtype = a.kv_dtype = FG_DTYPE_FP16;
    a.page_size = 16;
    return a;
}

static void open_env(env *e, int threads, const char *table) {
    fg_context_options o;
    fg_context_options_init(&o);
    o.num_threads = threads;
    o.calibration_path = table;
    check(fg_context_create(&o, &e->ctx), "fg_context_create");
    e->gpu = e->ctx->gpu != NULL;
    if (!e->reps) e->reps = e->gpu ? 50 : 7;
}

/* ------------------------------------------------------------------ calibrate */

/* time_us takes a callback: copies go through the backend's own copy entry point. */
typedef struct cp_arg { fg_context ctx; void *d, *s; size_t n; } cp_arg;

static void cp_fn(void *arg) {
    cp_arg *c = arg;
    char msg[256];
    c->ctx->gpu->copy(c->ctx->gpu_state, c->d, c->s, c->n, FG_COPY_D2D, NULL, msg, sizeof msg);
}

static void calibrate(env *e, const char *out) {
    fg_context_info info;
    check(fg_context_info_get(e->ctx, &info), "fg_context_info_get");
    fg_cost_params p;
    fg_cost_defaults(info.arch, info.compute_units, info.warp_size, &p);
    snprintf(p.device, sizeof p.device, "%s", info.device_name);
    const int steps = 6;
    int32_t blocks = e->gpu ? fg_cost_blocks(&p) : e->ctx->num_threads;

    /* 1. copy bandwidth */
    progress(1, steps, "copy bandwidth ...");
    size_t bytes = e->gpu ? (size_t)512 << 20 : (size_t)128 << 20;
    double copy_us;
    if (e->gpu) {
        void *s, *d;
        GPU(alloc, &s, bytes);
        GPU(alloc, &d, bytes);
        GPU(memset_, s, 1, bytes, NULL);
        cp_arg c = {e->ctx, d, s, bytes};
        GPU(time_us, cp_fn, &c, 20, NULL, 1, &copy_us);
        GPU(free_, s);
        GPU(free_, d);
    } else {
        char *s = malloc(bytes), *d = malloc(bytes);
        if (!s || !d) die("out of host memory");
        memset(s, 1, bytes);
        memset(d, 0, bytes);
        double v[7];
        for (int i = 0; i < 7; i++) {
            double t0 = now_us();
            memcpy(d, s, bytes);
            v[i] = now_us() - t0;
            s[i] = d[bytes - 1 - (size_t)i]; /* keep the copy observable */
        }
        copy_us = median(v, 7);
        free(s);
        free(d);
    }
    p.copy_gbs = 2.0 * (double)bytes / copy_us / 1e3;
    progress(1, steps, "copy bandwidth: %.1f GB/s (read + write)", p.copy_gbs);

    /* 2. launch overhead: one request, one token, one head */
    fg_plan_stats st;
    fgt_batch b;
    fg_attn_desc a1 = gqa(1, 1);
    shared_batch(1, 0, 1, 16, &b);
    double t_launch = time_batch(e, &a1, &b, &st);
    fgt_batch_free(&b);
    p.launch_us = t_launch * (e->gpu ? 0.8 : 0.5);
    progress(2, steps, "launch overhead: %.2f us per step of one tiny task", t_launch);

    /* 3. fixed cost per task: many one-page requests, no sharing to find */
    fg_attn_desc a8 = gqa(32, 8);
    int32_t n3 = blocks * 8 > 4096 ? 4096 : blocks * 8;
    shared_batch(n3, 0, 16, 16, &b);
    double t_fixed = time_batch(e, &a8, &b, &st);
    fgt_batch_free(&b);
    double per_task = (t_fixed - p.launch_us) * st.num_blocks / (st.num_tasks > 0 ? st.num_tasks : 1);
    p.task_fixed_us = per_task > 0.0 ? per_task * 0.7 : 0.0; /* ~30% of a one-page task is its KV */
    progress(3, steps, "fixed task cost: %.3f us (%d tasks of one page on %d blocks)", p.task_fixed_us,
             st.num_tasks, st.num_blocks);

    /* 4. gather efficiency: memory-bound split-KV decode, one row per request */
    int32_t n4 = e->gpu ? 64 : 8, len4 = e->gpu ? 8192 : 4096;
    shared_batch(n4, 0, len4, 16, &b);
    double t_mem = time_batch(e, &a8, &b, &st);
    fgt_batch_free(&b);
    double kv_bytes = (double)st.unique_kv_bytes;
    double eff = kv_bytes / (t_mem - p.launch_us) / 1e3 / p.copy_gbs;
    p.gather_eff = eff > 1.0 ? 1.0 : (eff < 0.01 ? 0.01 : eff);
    progress(4, steps, "paged KV gather: %.1f GB/s = %.2f of copy", kv_bytes / (t_mem - p.launch_us) / 1e3,
             p.gather_eff);

    /* 5. matrix rate: one shared prefix applied to more and more rows */
    double best = 0.0;
    int32_t rows_list[] = {4, 16, 64, 256};
    int32_t prefix = e->gpu ? 8192 : 1024;
    for (int i = 0; i < 4; i++) {
        shared_batch(rows_list[i], prefix, 1, 16, &b);
        double t = time_batch(e, &a8, &b, &st);
        fgt_batch_free(&b);
        double flops = 2.0 * rows_list[i] * 4.0 * 8.0 * (double)(prefix + 1) * 256.0;
        double tf = flops / (t - p.launch_us) / 1e6;
        if (tf > best) best = tf;
        progress(5, steps, "partial attention, %d requests x 4 heads per KV head over %d shared tokens: "
                 "%.1f us, %.3f TFLOP/s", rows_list[i], prefix, t, tf);
        fprintf(stderr, "\n");
    }
    if (e->gpu) {
        double scale = best / p.mma_tflops_f16;
        p.mma_tflops_f16 = best;
        if (scale < 1.0) p.fma_tflops_f32 *= scale;
    } else {
        p.mma_tflops_f16 = p.fma_tflops_f32 = best;
    }

    /* 6. merge and write */
    p.merge_us_per_row = 600.0 / (p.copy_gbs * 1e3);
    p.measured = 1;
    progress(6, steps, "fitted: copy %.1f GB/s, gather %.2f, matrix %.3f TFLOP/s, task %.3f us, launch %.2f us",
             p.copy_gbs, p.gather_eff, p.mma_tflops_f16, p.task_fixed_us, p.launch_us);
    char date[16], src[128];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    snprintf(src, sizeof src, "forgeattn-calibrate %s on %.60s (%s backend)", fg_version_string(), info.device_name,
             e->gpu ? e->ctx->gpu->name : "cpu");
    check(fg_calibration_write(out, &p, date, src), "fg_calibration_write");
    fg_cost_params back;
    check(fg_calibration_load(out, &back), "reading the table back");
    printf("wrote %s\n", out);
}

/* ------------------------------------------------------------------ check */

static void check_table(env *e, int32_t scale) {
    fg_context_info info;
    check(fg_context_info_get(e->ctx, &info), "fg_context_info_get");
    printf("table %s (%s) on %s, workloads at scale 1/%d\n", info.calibration_source,
           info.calibration_measured ? "measured" : "estimated", info.device_name, scale);
    printf("| workload | sharing | predicted us | measured us | error |\n|---|---|---|---|---|\n");
    for (int w = 0; w < FGT_NUM_WORKLOADS; w++) {
        fg_attn_desc a;
        fgt_batch b;
        if (fgt_batch_workload(w, scale, &a, &b)) die("fgt_batch_workload(%d) failed", w);
        progress(w + 1, FGT_NUM_WORKLOADS, "%s ...", fgt_workload_name(w));
        fg_plan_stats st;
        double t = time_batch(e, &a, &b, &st);
        printf("| %s | %s | %.1f | %.1f | %+.0f%% |\n", fgt_workload_name(w), st.sharing_used ? "yes" : "no",
               st.predicted_us, t, 100.0 * (st.predicted_us - t) / t);
        fflush(stdout);
        fgt_batch_free(&b);
    }
}

/* ------------------------------------------------------------------ plan time */

/* 256 requests, depth-4 tree: a 1024-token root shared by all, 8 x 512 shared by 32,
 * 4 x 256 under each shared by 8, and 64 own tokens per request. */
static void tree_batch(fgt_batch *out) {
    enum { R = 256, PS = 16 };
    int32_t q[R], kv[R], ip[R + 1];
    int32_t *ix = malloc(sizeof(int32_t) * R * 128);
    int32_t at = 0;
    for (int32_t r = 0; r < R; r++) {
        q[r] = 1;
        kv[r] = 1024 + 512 + 256 + 64;
        ip[r] = at;
        int32_t g1 = r / 32, g2 = r / 8;
        for (int32_t j = 0; j < 64; j++) ix[at++] = j;                         /* root */
        for (int32_t j = 0; j < 32; j++) ix[at++] = 64 + g1 * 32 + j;          /* level 2 */
        for (int32_t j = 0; j < 16; j++) ix[at++] = 64 + 256 + g2 * 16 + j;    /* level 3 */
        for (int32_t j = 0; j < 4; j++) ix[at++] = 64 + 256 + 512 + r * 4 + j; /* own */
    }
    ip[R] = at;
    if (fgt_batch_from_arrays(R, q, kv, ip, ix, 64 + 256 + 512 + R * 4, out)) die("tree batch");
    free(ix);
}

/* --arch: plan as a GPU context of that architecture would, on a machine without one.
 * fg_plan_create then takes its GPU path (blocks = units x resident blocks, pinned work
 * list) through this stand-in, which only plans: it never runs anything. */
static fg_status sim_supports(void *s, const fg_attn_desc *a, char *m, size_t n) {
    (void)s; (void)a; (void)m; (void)n;
    return FG_SUCCESS;
}
static fg_status sim_pinned_alloc(void *s, void **ptr, size_t bytes, char *m, size_t n) {
    (void)s; (void)m; (void)n;
    *ptr = malloc(bytes ? bytes : 1);
    return *ptr ? FG_SUCCESS : FG_ERR_OUT_OF_MEMORY;
}
static fg_status sim_pinned_free(void *s, void *ptr, char *m, size_t n) {
    (void)s; (void)m; (void)n;
    free(ptr);
    return FG_SUCCESS;
}
static void sim_close(void *s) { (void)s; }

static void plan_time(env *e, int reps, const char *arch, int units) {
    fgt_batch b;
    tree_batch(&b);
    fg_attn_desc a = gqa(32, 8);
    double *v = malloc(sizeof(double) * (size_t)reps);
    fg_plan plan;
    static fg_backend_ops sim; /* static: the context may cache buffers it allocated until destroy */
    memset(&sim, 0, sizeof sim);
    const fg_backend_ops *saved_gpu = e->ctx->gpu;
    fg_cost_params saved_cost = e->ctx->cost;
    if (arch) {
        if (e->gpu) die("--arch needs the CPU backend (this context has a GPU)");
        sim.name = "plan-only";
        sim.supports = sim_supports;
        sim.pinned_alloc = sim_pinned_alloc;
        sim.pinned_free = sim_pinned_free;
        sim.close = sim_close;
        fg_cost_defaults(arch, units, 0, &e->ctx->cost);
        e->ctx->gpu = &sim;
    }
    for (int i = 0; i < 20; i++) { check(fg_plan_create(e->ctx, &a, &b.desc, &plan), "fg_plan_create"); fg_plan_destroy(plan); }
    for (int i = 0; i < reps; i++) {
        double t0 = now_us();
        check(fg_plan_create(e->ctx, &a, &b.desc, &plan), "fg_plan_create");
        v[i] = now_us() - t0;
        fg_plan_destroy(plan);
    }
    fg_plan_stats st;
    check(fg_plan_create(e->ctx, &a, &b.desc, &plan), "fg_plan_create");
    check(fg_plan_stats_get(plan, &st), "fg_plan_stats_get");
    fg_plan_destroy(plan);
    double med = median(v, reps);
    char what[96];
    if (arch) snprintf(what, sizeof what, "%s defaults (%d units, planned only)", arch, e->ctx->cost.compute_units);
    else snprintf(what, sizeof what, "%s", e->gpu ? "GPU" : "CPU");
    printf("fg_plan_create, 256 requests, depth-4 tree (%d nodes), GQA 32/8, %s context: median %.1f us "
           "over %d runs (min %.1f, max %.1f); plan: %d items, %d tasks, %d blocks, sharing %s, "
           "predicted %.2f us (non-sharing %.2f us), imbalance %.3f\n",
           st.num_nodes, what, med, reps, v[0], v[reps - 1], st.num_items, st.num_tasks,
           st.num_blocks, st.sharing_used ? "used" : "not used", st.predicted_us, st.predicted_nonshared_us,
           st.imbalance);

    /* The planner's parts: the forest (plan.c builds it for both candidates), then the
     * division and the schedule with this context's parameters. */
    fg_forest f;
    check(fg_forest_from_block_tables(&b.desc, 16, 0, &f), "forest");
    const fg_cost_params *p = &e->ctx->cost;
    int32_t qi[257];
    qi[0] = 0;
    for (int r = 0; r < 256; r++) qi[r + 1] = qi[r] + 1;
    fg_divide_input in = {&f, 256, b.q_len, b.kv_len, qi, 4, 8, 128, 128, 2, 2, 16,
                          e->ctx->gpu ? fg_cost_blocks(p) : e->ctx->num_threads};
    double *vf = malloc(sizeof(double) * (size_t)reps), *vd = malloc(sizeof(double) * (size_t)reps);
    double *vs = malloc(sizeof(double) * (size_t)reps), *vp = malloc(sizeof(double) * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        double t0 = now_us();
        fg_forest f2;
        check(fg_forest_from_block_tables(&b.desc, 16, 0, &f2), "forest");
        vf[i] = now_us() - t0;
        fg_forest_free(&f2);
    }
    for (int i = 0; i < reps; i++) {
        double t0 = now_us();
        fg_division d;
        check(fg_divide(&in, p, &d), "fg_divide");
        vd[i] = now_us() - t0;
        /* as fg_plan_create does it: pack the short items (dropping fg_divide's LPT when
         * that changed them), then schedule the item costs, 8 KV heads per item */
        fg_cost_shape sh = {4, 128, 128, 2, 2, 16};
        int32_t packed = 0;
        t0 = now_us();
        check(fg_pack_short_items(&d, p, &sh, 8, in.num_blocks, &packed), "fg_pack_short_items");
        if (packed) fg_division_drop_lpt(&d);
        double tp = now_us() - t0;
        int32_t T = d.num_items * 8, B = T < in.num_blocks ? T : in.num_blocks;
        int32_t *off = malloc(sizeof(int32_t) * (size_t)(B + 1)), *bt = malloc(sizeof(int32_t) * (size_t)T);
        double mk, imb;
        t0 = now_us();
        check(fg_schedule_items_hint(d.item_cost_us, d.num_items, 8, B, &d.lpt, off, bt, &mk, &imb),
              "fg_schedule");
        vs[i] = now_us() - t0;
        vp[i] = tp;
        free(off); free(bt);
        fg_division_free(&d);
    }
    printf("  parts (%d blocks, sharing forest): forest %.1f us, fg_divide %.1f us, fg_pack %.1f us, fg_schedule "
           "%.1f us (medians)\n", in.num_blocks, median(vf, reps), median(vd, reps), median(vp, reps), median(vs, reps));
    free(vp);
    free(vf);
    free(vd);
    free(vs);
    fg_forest_free(&f);
    e->ctx->gpu = saved_gpu;
    e->ctx->cost = saved_cost;
    free(v);
    fgt_batch_free(&b);
}

/* ------------------------------------------------------------------ plans */

/* --plans TABLE: W1..W5 at full size planned as a GPU context with that table would
 * (through the plan-only stand-in above), shared and non-shared: what the planner
 * chose and what it predicts, without a GPU. For planner changes: the plans a device
 * run would time, seen before spending device time on them. */
static void plans(env *e, const char *table) {
    if (e->gpu) die("--plans needs the CPU backend (this context has a GPU)");
    fg_cost_params p;
    check(fg_calibration_load(table, &p), "fg_calibration_load");
    static fg_backend_ops sim;
    memset(&sim, 0, sizeof sim);
    sim.name = "plan-only";
    sim.supports = sim_supports;
    sim.pinned_alloc = sim_pinned_alloc;
    sim.pinned_free = sim_pinned_free;
    sim.close = sim_close;
    const fg_backend_ops *saved_gpu = e->ctx->gpu;
    fg_cost_params saved_cost = e->ctx->cost;
    e->ctx->cost = p;
    e->ctx->gpu = &sim;
    printf("table %s (%s, %d units), full-size workloads, planned only\n", table, p.arch, p.compute_units);
    printf("| workload | plan | items | tasks | blocks | partial rows | partial MB | predicted us | "
           "floor us | imbalance |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int w = 0; w < FGT_NUM_WORKLOADS; w++) {
        fg_attn_desc a;
        fgt_batch b;
        if (fgt_batch_workload(w, 1, &a, &b)) die("fgt_batch_workload(%d) failed", w);
        for (int ns = 0; ns < 2; ns++) {
            b.desc.flags = ns ? FG_BATCH_NO_SHARING : 0;
            fg_plan plan;
            fg_plan_stats st;
            check(fg_plan_create(e->ctx, &a, &b.desc, &plan), "fg_plan_create");
            check(fg_plan_stats_get(plan, &st), "fg_plan_stats_get");
            fg_plan_destroy(plan);
            printf("| %s | %s | %d | %d | %d | %d | %.1f | %.1f | %.1f | %.3f |\n", fgt_workload_name(w),
                   ns ? "non-shared" : (st.sharing_used ? "shared" : "shared (not used)"), st.num_items,
                   st.num_tasks, st.num_blocks, st.num_partials, st.partial_bytes / 1e6, st.predicted_us,
                   st.predicted_floor_us, st.imbalance);
        }
        fgt_batch_free(&b);
    }
    e->ctx->gpu = saved_gpu;
    e->ctx->cost = saved_cost;
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
    fprintf(stderr,
            "usage: forgeattn-calibrate [-o TABLE] [--threads N] [--reps N]\n"
            "       forgeattn-calibrate --check TABLE [--scale S] [--threads N]\n"
            "       forgeattn-calibrate --plan-time [--reps N] [--threads N] [--arch ARCH [--units N]]\n"
            "       forgeattn-calibrate --plans TABLE\n"
            "       forgeattn-calibrate --defaults ARCH UNITS -o TABLE [--device NAME] [--source TEXT]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *out = "calibration.txt", *table = NULL, *arch = NULL, *device = NULL, *source = NULL;
    const char *plan_arch = NULL;
    int threads = 0, reps = 0, mode = 0, units = 0;
    int32_t scale = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(s, "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(s, "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(s, "--scale") && i + 1 < argc) scale = atoi(argv[++i]);
        else if (!strcmp(s, "--check") && i + 1 < argc) { mode = 1; table = argv[++i]; }
        else if (!strcmp(s, "--plan-time")) mode = 2;
        else if (!strcmp(s, "--plans") && i + 1 < argc) { mode = 4; table = argv[++i]; }
        else if (!strcmp(s, "--arch") && i + 1 < argc) plan_arch = argv[++i];
        else if (!strcmp(s, "--units") && i + 1 < argc) units = atoi(argv[++i]);
        else if (!strcmp(s, "--defaults") && i + 2 < argc) { mode = 3; arch = argv[++i]; units = atoi(argv[++i]); }
        else if (!strcmp(s, "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(s, "--source") && i + 1 < argc) source = argv[++i];
        else usage();
    }
    if (mode == 3) {
        fg_cost_params p;
        fg_cost_defaults(arch, units, 0, &p);
        if (device) snprintf(p.device, sizeof p.device, "%s", device);
        char date[16];
        time_t now = time(NULL);
        strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
        check(fg_calibration_write(out, &p, date, source ? source : "built-in defaults (src/cost_model.c)"),
              "fg_calibration_write");
        printf("wrote %s\n", out);
        return 0;
    }
    env e = {0, 0, reps};
    open_env(&e, threads, mode == 1 ? table : NULL);
    if (mode == 0) calibrate(&e, out);
    else if (mode == 1) check_table(&e, scale > 0 ? scale : (e.gpu ? 1 : 8));
    else if (mode == 4) plans(&e, table);
    else plan_time(&e, reps > 0 ? reps : 201, plan_arch, units > 0 ? units : 132);
    fg_context_destroy(e.ctx);
    return 0;
}
