/*
 * forgeattn-bench — the main job: runs the DESIGN.md workloads W1..W5 on the best
 * backend present, with sharing and with the library's own non-sharing path
 * (FG_BATCH_NO_SHARING: the FlashDecoding-class baseline), checks both results against
 * the double-precision reference on a sample of query tokens, and prints every result
 * next to its floor.
 *
 *   forgeattn-bench [--backend auto|cpu|cuda|hip] [--quick] [--full] [--scale DIV]
 *                   [--only W1n32,W5] [--runs N] [--warmup N] [--sample N] [--threads N]
 *                   [--seed S] [--json FILE] [--markdown] [--markdown-file FILE] [--list]
 *
 * Workloads (fp16 Q/K/V/O, head_dim 128, page size 16, q_len 1 per request):
 *   W1n16, W1n32  MHA 32/32 heads: one 8192-token prompt, n samples x 256 own tokens
 *   W2            GQA 32/8: 8 documents x 4096 tokens, each shared by 16 requests, 512 own
 *   W3            GQA 32/8: 2048-token system prompt shared by 64; 4 groups of 16 share
 *                 2048 more; 256 own
 *   W4            GQA 32/8: 64 requests, no sharing, own lengths 1024 + floor(7168 k / 63),
 *                 k = 0..63 in an interleaved order (1024 .. 8192, 294,884 tokens in all)
 *   W5            GQA 32/8: one 1024-token prefix shared by 256 requests, 64 own tokens
 * The batches are built by tests/support/workloads.h (the tests use the same ones). Own
 * tokens include the request's new token (kv_len counts it). Shared lengths are whole
 * pages, so the sharing is exactly the shared pages (engines copy a partly filled page on
 * write); every node gets fresh pages.
 *
 * Byte columns (what the plan's stats must report; the bench checks it):
 *   bytes per KV token = 2 (K and V) x kv_heads x head_dim x 2 bytes
 *                      = 16,384 B for MHA 32 KV heads, 4,096 B for GQA 8 KV heads
 *   unique KV bytes    = (each distinct token once) x bytes per token
 *   non-shared bytes   = (sum of kv_len over requests) x bytes per token
 *   W1 n  : unique 8192 + n*256 tokens,  non-shared n*(8192 + 256)
 *           n=16: 12,288 tok = 201,326,592 B;  135,168 tok = 2,214,592,512 B
 *           n=32: 16,384 tok = 268,435,456 B;  270,336 tok = 4,429,185,024 B
 *   W2    : unique 8*4096 + 128*512 = 98,304 tok = 402,653,184 B;
 *           non-shared 128*(4096 + 512) = 589,824 tok = 2,415,919,104 B
 *   W3    : unique 2048 + 4*2048 + 64*256 = 26,624 tok = 109,051,904 B;
 *           non-shared 64*(2048 + 2048 + 256) = 278,528 tok = 1,140,850,688 B
 *   W4    : unique = non-shared = 294,884 tok = 1,207,844,864 B
 *   W5    : unique 1024 + 256*64 = 17,408 tok = 71,303,168 B;
 *           non-shared 256*(1024 + 64) = 278,528 tok = 1,140,850,688 B
 *   Q/O bytes = q tokens x q_heads x head_dim x 2 bytes x 2 (Q read, O written).
 * --quick (= --scale 8) divides every length by 8 (shared lengths stay whole pages) and,
 * as workloads.h does for any scale, W2's documents (8 -> 2), W4's requests (64 -> 8) and
 * W5's requests (256 -> 32); W1's n and W3's shape are kept. At a scale other than 1 the
 * expected byte columns come from fgt_expected_forest (an independent slot count).
 *
 * Floor = max((unique KV bytes + Q/O bytes) / copy bandwidth, matrix work / matrix rate).
 *   copy bandwidth = (bytes read + bytes written) / time of a large copy, measured in the
 *     same run: CPU: memcpy of 256 MiB split over the backend's threads, best of 5;
 *     GPU: the backend's device-to-device copy of up to 1 GiB timed by its time_us (events).
 *     (A kernel that only reads can beat this convention slightly: its reads alone may
 *     run faster than reads + writes of a copy. Fractions just above 1 are possible.)
 *   matrix work = sum over q tokens and query heads of visible KV x 2 x (d_qk + d_v) flops.
 *   matrix rate: CPU: a register-blocked fp32 multiply-add loop compiled like the library
 *     (same flags, no -march), run on all backend threads; GPU: the backend's matrix_tflops
 *     (fp16 -> fp32 matrix instructions, operands in registers, on every SM: mma.sync on
 *     NVIDIA, which is what the kernels issue; Hopper's wgmma, cuBLAS's path, is faster),
 *     falling back to the calibration table's fp16 matrix rate when the backend has none.
 * Fraction of floor = floor / measured time (1.0 = at the floor).
 *
 * Timing: CPU: wall clock of fg_run (it returns when the output is written), median of
 * --runs after --warmup runs, the shared and non-shared runs interleaved so that other
 * load on the machine hits both alike (the header prints /proc/loadavg). The CPU caches
 * are not flushed: the full-scale KV caches (71 MB .. 1.2 GB) are far larger than a
 * CPU's last-level cache. GPU: the backend's
 * time_us (events around each call, median of --runs), with a cold L2: every call reads
 * the next of C copies of the KV cache, C chosen so that C-1 copies exceed twice the L2.
 * Each call is queued behind a short spin kernel, so that the start event is reached only
 * after the host has submitted the whole call: the events bracket device time, as in an
 * engine whose stream or graph runs ahead of the host (nvbench's blocking-kernel method).
 * The shared plan is also timed launched from an idle device (idle_us), which adds the
 * host's submission of fg_run's launches (a few microseconds).
 *
 * Check: the reference (fgtest, double precision from the same rounded inputs) is computed
 * for a sample of --sample requests spread evenly over the batch (first and last included,
 * so every level of every tree is hit), on a sub-batch with the same block tables; the
 * outputs of both plans (O and LSE) for those q tokens must be within fgtest's fp16
 * tolerances, and the plan's byte stats must equal the arithmetic above.
 *
 * Exit status: 0 when every check passes, 1 when any fails, 2 on a usage or setup error.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fgtest.h"
#include "workloads.h"
#include "forgeattn.h"
#include "internal.h"

#ifndef FG_BENCH_BUILD
#define FG_BENCH_BUILD "unknown build"
#endif
#ifndef FG_BENCH_GIT
#define FG_BENCH_GIT "unknown"
#endif

#define MAX_WORKLOADS 8

/* ------------------------------------------------------------------ workloads */

/* The batches come from tests/support/workloads.h (shared with the tests); this table
 * adds the CLI ids and the full-scale arithmetic of the byte columns (above), which the
 * plan's stats must match. At other scales the expected counts come from
 * fgt_expected_forest, an independent count of the distinct page slots. */
typedef struct wl_entry {
    const char *id;
    int fgt_id;
    int64_t unique_tokens, nonshared_tokens; /* at full scale */
} wl_entry;

static const wl_entry k_workloads[] = {
    {"W1n16", FGT_W1_N16, 8192 + 16 * 256, 16 * (8192 + 256)},
    {"W1n32", FGT_W1_N32, 8192 + 32 * 256, 32 * (8192 + 256)},
    {"W2", FGT_W2, 8 * 4096 + 128 * 512, 128 * (4096 + 512)},
    {"W3", FGT_W3, 2048 + 4 * 2048 + 64 * 256, 64 * (2048 + 2048 + 256)},
    {"W4", FGT_W4, 294884, 294884},
    {"W5", FGT_W5, 1024 + 256 * 64, 256 * (1024 + 64)},
};
#define NUM_WORKLOADS ((int)(sizeof k_workloads / sizeof k_workloads[0]))

static double matrix_flops(const fg_attn_desc *a, const fgt_batch *b) {
    double f = 0;
    for (int32_t r = 0; r < b->desc.num_requests; r++)
        for (int32_t i = 0; i < b->q_len[r]; i++) {
            double visible = (double)(b->kv_len[r] - b->q_len[r] + i + 1);
            f += visible * a->num_q_heads * 2.0 * (a->head_dim_qk + a->head_dim_v);
        }
    return f;
}

/* ------------------------------------------------------------------ utilities */

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double median(const double *v, int n) {
    double *c = malloc(sizeof(double) * (size_t)n);
    if (!c) return NAN;
    memcpy(c, v, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("forgeattn-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* ------------------------------------------------------------------ CPU probes */

typedef struct copy_job {
    char *dst;
    const char *src;
    size_t bytes;
} copy_job;

static void *copy_thread(void *p) {
    copy_job *j = p;
    memcpy(j->dst, j->src, j->bytes);
    return NULL;
}

/* Copy bandwidth of the host, (read + write) bytes per second, with `threads` threads,
 * best of 5 after a warm-up that also faults the pages in. */
static double cpu_copy_gbs(int threads) {
    const size_t bytes = (size_t)256 << 20;
    char *src = malloc(bytes), *dst = malloc(bytes);
    if (!src || !dst) { free(src); free(dst); return NAN; }
    memset(src, 1, bytes);
    memset(dst, 2, bytes);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    pthread_t tid[64];
    copy_job jobs[64];
    double best = 0;
    for (int rep = 0; rep < 6; rep++) {
        size_t chunk = bytes / (size_t)threads;
        double t0 = now_us();
        for (int t = 0; t < threads; t++) {
            jobs[t].dst = dst + chunk * (size_t)t;
            jobs[t].src = src + chunk * (size_t)t;
            jobs[t].bytes = t == threads - 1 ? bytes - chunk * (size_t)t : chunk;
            if (t > 0) pthread_create(&tid[t], NULL, copy_thread, &jobs[t]);
        }
        copy_thread(&jobs[0]);
        for (int t = 1; t < threads; t++) pthread_join(tid[t], NULL);
        double dt = now_us() - t0;
        double gbs = 2.0 * (double)bytes / dt * 1e-3; /* bytes/us = MB/s; /1e3 = GB/s */
        if (rep > 0 && gbs > best) best = gbs;
    }
    /* Keep the copy observable so that it cannot be optimised away. */
    volatile char sink = dst[bytes / 2];
    (void)sink;
    free(src);
    free(dst);
    return best;
}

#define MR_M 4
#define MR_N 16
#define MR_K 256

typedef struct rate_job {
    double seconds;
    double flops;
    float sink;
} rate_job;

/* fp32 multiply-add rate of one thread on an L1-resident 4x16 += 4xK * Kx16 product:
 * the shape of the CPU backend's inner loop (a query-row block against a KV tile). */
static void *rate_thread(void *p) {
    rate_job *j = p;
    static const int iters = 2000;
    float *a = malloc(sizeof(float) * MR_M * MR_K);
    float *b = malloc(sizeof(float) * MR_K * MR_N);
    float c[MR_M][MR_N];
    if (!a || !b) { free(a); free(b); j->flops = 0; j->seconds = 1; return NULL; }
    for (int i = 0; i < MR_M * MR_K; i++) a[i] = (float)(i % 7) * 0.001f;
    for (int i = 0; i < MR_K * MR_N; i++) b[i] = (float)(i % 5) * 0.001f;
    memset(c, 0, sizeof c);
    double t0 = now_us();
    for (int it = 0; it < iters; it++)
        for (int k = 0; k < MR_K; k++)
            for (int i = 0; i < MR_M; i++) {
                float av = a[i * MR_K + k];
                for (int jj = 0; jj < MR_N; jj++) c[i][jj] += av * b[k * MR_N + jj];
            }
    j->seconds = (now_us() - t0) * 1e-6;
    j->flops = 2.0 * MR_M * MR_N * MR_K * iters;
    float s = 0;
    for (int i = 0; i < MR_M; i++)
        for (int jj = 0; jj < MR_N; jj++) s += c[i][jj];
    j->sink = s;
    free(a);
    free(b);
    return NULL;
}

/* All threads at once (they share cores' FMA units with nothing else), best of 3. */
static double cpu_matrix_gflops(int threads) {
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    pthread_t tid[64];
    rate_job jobs[64];
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        for (int t = 1; t < threads; t++) pthread_create(&tid[t], NULL, rate_thread, &jobs[t]);
        rate_thread(&jobs[0]);
        for (int t = 1; t < threads; t++) pthread_join(tid[t], NULL);
        double total = 0;
        for (int t = 0; t < threads; t++) {
            total += jobs[t].flops / jobs[t].seconds;
            sink += jobs[t].sink;
        }
        if (total * 1e-9 > best) best = total * 1e-9;
    }
    (void)sink;
    return best;
}

/* ------------------------------------------------------------------ options */

typedef struct options {
    fg_backend_kind backend;
    const char *backend_name;
    int32_t scale;        /* length divisor; 1 = full DESIGN.md scale */
    int scale_given;
    int runs, warmup, sample, threads;
    uint64_t seed;
    const char *json_path;
    const char *md_path;
    int markdown;
    char only[256];
} options;

static void usage(FILE *f) {
    fputs("usage: forgeattn-bench [--backend auto|cpu|cuda|hip] [--quick] [--full] [--scale DIV]\n"
          "                       [--only ID,ID] [--runs N] [--warmup N] [--sample N] [--threads N]\n"
          "                       [--seed S] [--json FILE] [--markdown] [--markdown-file FILE]\n"
          "                       [--list]\n"
          "  --quick       workloads with every length divided by 8 (= --scale 8)\n"
          "  --full        the DESIGN.md sizes (default)\n"
          "  --only        run only these workloads (W1n16 W1n32 W2 W3 W4 W5)\n"
          "  --runs N      timed runs per plan (median reported); CPU default 3 (quick 5), GPU 20\n"
          "  --sample N    requests checked against the reference per workload (default 8)\n"
          "  --json FILE   JSON lines: a device/build record, then one object per row\n"
          "  --markdown    print the table as markdown; --markdown-file also writes it to FILE\n",
          f);
}

static int only_has(const options *o, const char *id) {
    if (!o->only[0]) return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", o->only);
    for (char *tok = strtok(buf, ", "); tok; tok = strtok(NULL, ", ")) {
        size_t n = strlen(tok);
        if (n == strlen(id)) {
            size_t i = 0;
            while (i < n && tolower((unsigned char)tok[i]) == tolower((unsigned char)id[i])) i++;
            if (i == n) return 1;
        }
    }
    return 0;
}

static void parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->backend = FG_BACKEND_AUTO;
    o->backend_name = "auto";
    o->scale = 1;
    o->runs = -1;
    o->warmup = -1;
    o->sample = 8;
    o->seed = 20250522;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE() do { if (!v) die("%s needs a value (see --help)", a); i++; } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "--list")) {
            for (int w = 0; w < NUM_WORKLOADS; w++)
                printf("%-6s %s\n", k_workloads[w].id, fgt_workload_desc(k_workloads[w].fgt_id));
            exit(0);
        } else if (!strcmp(a, "--backend")) {
            NEED_VALUE();
            if (!strcmp(v, "auto")) o->backend = FG_BACKEND_AUTO;
            else if (!strcmp(v, "cpu")) o->backend = FG_BACKEND_CPU;
            else if (!strcmp(v, "cuda")) o->backend = FG_BACKEND_CUDA;
            else if (!strcmp(v, "hip")) o->backend = FG_BACKEND_HIP;
            else die("--backend %s: expected auto, cpu, cuda or hip", v);
            o->backend_name = v;
        } else if (!strcmp(a, "--quick")) { o->scale = 8; o->scale_given = 1; }
        else if (!strcmp(a, "--full")) { o->scale = 1; o->scale_given = 1; }
        else if (!strcmp(a, "--scale")) {
            NEED_VALUE();
            o->scale = atoi(v);
            o->scale_given = 1;
            if (o->scale < 1 || o->scale > 64) die("--scale %s: expected a divisor in 1..64", v);
        } else if (!strcmp(a, "--only")) {
            NEED_VALUE();
            snprintf(o->only, sizeof o->only, "%s", v);
        } else if (!strcmp(a, "--runs")) {
            NEED_VALUE();
            o->runs = atoi(v);
            if (o->runs < 1 || o->runs > 1000) die("--runs %s: expected 1..1000", v);
        } else if (!strcmp(a, "--warmup")) {
            NEED_VALUE();
            o->warmup = atoi(v);
            if (o->warmup < 0 || o->warmup > 100) die("--warmup %s: expected 0..100", v);
        } else if (!strcmp(a, "--sample")) {
            NEED_VALUE();
            o->sample = atoi(v);
            if (o->sample < 1 || o->sample > 100000) die("--sample %s: expected >= 1", v);
        } else if (!strcmp(a, "--threads")) {
            NEED_VALUE();
            o->threads = atoi(v);
            if (o->threads < 0 || o->threads > 1024) die("--threads %s: expected 0..1024", v);
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE();
            o->seed = strtoull(v, NULL, 0);
        } else if (!strcmp(a, "--json")) { NEED_VALUE(); o->json_path = v; }
        else if (!strcmp(a, "--markdown")) o->markdown = 1;
        else if (!strcmp(a, "--markdown-file")) { NEED_VALUE(); o->md_path = v; }
        else { usage(stderr); die("unknown option %s", a); }
#undef NEED_VALUE
    }
    for (int w = 0, any = 0; w <= NUM_WORKLOADS; w++) {
        if (w == NUM_WORKLOADS) { if (!any) die("--only %s matches no workload (see --list)", o->only); break; }
        any |= only_has(o, k_workloads[w].id);
    }
}

/* ------------------------------------------------------------------ GPU helpers */

/* State for timing fg_run through the backend's time_us: each call reads the next copy
 * of the KV cache, so that no call finds the previous call's KV in L2. */
typedef struct gpu_run_arg {
    fg_plan plan;
    fg_tensors t;
    void **k_copies, **v_copies;
    int copies, calls;
    void *ws;
    size_t ws_bytes;
    fg_status st;
} gpu_run_arg;

static void gpu_run_fn(void *p) {
    gpu_run_arg *g = p;
    int c = g->calls++ % g->copies;
    g->t.k_cache = g->k_copies[c];
    g->t.v_cache = g->v_copies[c];
    fg_status st = fg_run(g->plan, &g->t, g->ws, g->ws_bytes, NULL);
    if (st != FG_SUCCESS && g->st == FG_SUCCESS) g->st = st;
}

typedef struct gpu_copy_arg {
    fg_context ctx;
    void *dst, *src;
    size_t bytes;
    fg_status st;
} gpu_copy_arg;

static void gpu_copy_fn(void *p) {
    gpu_copy_arg *g = p;
    char msg[256];
    fg_status st = g->ctx->gpu->copy(g->ctx->gpu_state, g->dst, g->src, g->bytes, FG_COPY_D2D,
                                     NULL, msg, sizeof msg);
    if (st != FG_SUCCESS && g->st == FG_SUCCESS) g->st = st;
}

#define GPU_CHECK(call)                                                                    \
    do {                                                                                   \
        char msg_[256] = "";                                                               \
        fg_status st_ = (call);                                                            \
        if (st_ != FG_SUCCESS) die("%s failed: %s (%s)", #call, fg_status_string(st_), msg_); \
    } while (0)
#define GPU(fn, ...) ctx->gpu->fn(ctx->gpu_state, __VA_ARGS__, msg_, sizeof msg_)

/* Device copy bandwidth, (read + write) GB/s: a D2D copy of up to 1 GiB, median of 10. */
static double gpu_copy_gbs(fg_context ctx) {
    size_t bytes = (size_t)1 << 30;
    if (ctx->props.global_mem_bytes > 0 && (size_t)(ctx->props.global_mem_bytes / 8) < bytes)
        bytes = (size_t)(ctx->props.global_mem_bytes / 8);
    gpu_copy_arg g = {ctx, NULL, NULL, bytes, FG_SUCCESS};
    GPU_CHECK(GPU(alloc, &g.src, bytes));
    GPU_CHECK(GPU(alloc, &g.dst, bytes));
    GPU_CHECK(GPU(memset_, g.src, 1, bytes, NULL));
    GPU_CHECK(GPU(memset_, g.dst, 2, bytes, NULL));
    for (int i = 0; i < 3; i++) gpu_copy_fn(&g);
    double us = 0;
    GPU_CHECK(GPU(time_us, gpu_copy_fn, &g, 10, NULL, 1, &us));
    GPU_CHECK(GPU(synchronize, NULL));
    if (g.st != FG_SUCCESS) die("device copy failed: %s", fg_status_string(g.st));
    GPU_CHECK(GPU(free_, g.src));
    GPU_CHECK(GPU(free_, g.dst));
    return 2.0 * (double)bytes / us * 1e-3;
}

/* ------------------------------------------------------------------ one workload */

typedef struct row_result {
    const char *id;
    const char *what;
    double shared_us, nonshared_us;
    double shared_idle_us; /* GPU: launched from an idle device (host submission included) */
    int64_t unique_bytes, nonshared_bytes, qo_bytes;
    int64_t expect_unique_bytes, expect_nonshared_bytes;
    double flops;
    double floor_us;
    const char *bound;
    fg_plan_stats st, st_ns;
    int check_ok;
    double max_err_o, max_err_lse;
    char check_msg[320];
    int sampled_requests;
    int copies;
} row_result;

/* The sampled requests: `n` spread evenly over [0, R), first and last included. */
static int pick_sample(int32_t R, int n, int32_t *out) {
    if (n > R) n = R;
    int m = 0;
    for (int k = 0; k < n; k++) {
        int32_t r = n == 1 ? 0 : (int32_t)((int64_t)k * (R - 1) / (n - 1));
        if (m == 0 || out[m - 1] != r) out[m++] = r;
    }
    return m;
}

/* Compare the plan's output (host copies in t->o / t->lse) with the reference on the
 * sampled requests (fgt_reference_request: per request, double precision, into arrays
 * of the whole batch's shape). Returns 1 when within tolerance; fills the worst errors. */
static int check_sample(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                        const int32_t *reqs, int nreq, double *err_o, double *err_lse,
                        char *msg, size_t msg_len) {
    int64_t rows = (int64_t)b->num_q_tokens * a->num_q_heads;
    double *oref = malloc(sizeof(double) * (size_t)(rows * a->head_dim_v));
    double *lref = malloc(sizeof(double) * (size_t)rows);
    int ok = 1;
    *err_o = *err_lse = 0;
    if (!oref || !lref) {
        snprintf(msg, msg_len, "out of host memory for the check");
        ok = 0;
    }
    for (int i = 0; ok && i < nreq; i++) {
        if (fgt_reference_request(a, b, t, reqs[i], oref, t->lse ? lref : NULL)) {
            snprintf(msg, msg_len, "fgt_reference_request failed on request %d", reqs[i]);
            ok = 0;
            break;
        }
        fgt_cmp cmp;
        memset(&cmp, 0, sizeof cmp);
        int bad = fgt_compare_request(a, b, t, reqs[i], oref, t->lse ? lref : NULL, &cmp);
        if (cmp.max_abs_o > *err_o || isnan(cmp.max_abs_o)) *err_o = cmp.max_abs_o;
        if (cmp.max_abs_lse > *err_lse || isnan(cmp.max_abs_lse)) *err_lse = cmp.max_abs_lse;
        if (bad) {
            snprintf(msg, msg_len, "request %d: %.200s", reqs[i], cmp.msg);
            ok = 0;
        }
    }
    free(oref);
    free(lref);
    return ok;
}

typedef struct bench_env {
    fg_context ctx;
    fg_context_info info;
    int gpu;
    double copy_gbs;
    double matrix_tflops;
    const char *matrix_src;
    int runs, warmup;
} bench_env;

static void fail_fg(fg_status st, const char *what) {
    die("%s: %s: %s", what, fg_status_string(st), fg_last_error());
}

/* One plan with its workspace (host memory on the CPU, device memory on a GPU). */
typedef struct plan_ws {
    fg_plan plan;
    void *ws;
    size_t ws_bytes;
} plan_ws;

static void plan_ws_prepare(bench_env *env, fg_plan plan, plan_ws *p) {
    fg_context ctx = env->ctx;
    p->plan = plan;
    fg_status st = fg_plan_workspace_size(plan, &p->ws_bytes);
    if (st != FG_SUCCESS) fail_fg(st, "fg_plan_workspace_size");
    size_t bytes = p->ws_bytes ? p->ws_bytes : 256;
    if (env->gpu) {
        GPU_CHECK(GPU(alloc, &p->ws, bytes));
    } else {
        p->ws = aligned_alloc(256, (bytes + 255) / 256 * 256);
        if (!p->ws) die("out of host memory for a %zu-byte workspace", bytes);
    }
    if ((st = fg_plan_upload(plan, p->ws, p->ws_bytes, NULL)) != FG_SUCCESS) fail_fg(st, "fg_plan_upload");
    if (env->gpu) GPU_CHECK(GPU(synchronize, NULL));
}

static void plan_ws_release(bench_env *env, plan_ws *p) {
    fg_context ctx = env->ctx;
    if (env->gpu) GPU_CHECK(GPU(free_, p->ws));
    else free(p->ws);
    p->ws = NULL;
}

/* The checked run: outputs poisoned, one run, outputs back in ht->o / ht->lse. */
static void checked_run(bench_env *env, plan_ws *p, fgt_tensors *ht, gpu_run_arg *g,
                        const fg_attn_desc *a) {
    fg_context ctx = env->ctx;
    fg_status st;
    if (!env->gpu) {
        fgt_tensors_poison_output(a, ht);
        if ((st = fg_run(p->plan, &ht->t, p->ws, p->ws_bytes, NULL)) != FG_SUCCESS) fail_fg(st, "fg_run");
        return;
    }
    g->plan = p->plan;
    g->ws = p->ws;
    g->ws_bytes = p->ws_bytes;
    g->st = FG_SUCCESS;
    size_t o_bytes = ht->o_elems * (size_t)fg_dtype_size(a->q_dtype);
    /* 0xff bytes are NaN in fp16/bf16/fp32: an output the kernel forgot stays visible. */
    GPU_CHECK(GPU(memset_, (void *)g->t.o, 0xff, o_bytes, NULL));
    if (g->t.lse) GPU_CHECK(GPU(memset_, g->t.lse, 0xff, ht->lse_elems * sizeof(float), NULL));
    gpu_run_fn(g);
    GPU_CHECK(GPU(synchronize, NULL));
    if (g->st != FG_SUCCESS) fail_fg(g->st, "fg_run");
    GPU_CHECK(GPU(copy, ht->o, g->t.o, o_bytes, FG_COPY_D2H, NULL));
    if (g->t.lse) GPU_CHECK(GPU(copy, ht->lse, g->t.lse, ht->lse_elems * sizeof(float), FG_COPY_D2H, NULL));
    GPU_CHECK(GPU(synchronize, NULL));
}

/* Time both plans. CPU: wall clock, the two plans' runs interleaved (shared, non-shared,
 * shared, ...) so that a neighbour's load on a shared machine hits both alike; median.
 * GPU: the backend's time_us (events, median) per plan, KV copies rotated per call. */
static void time_plans(bench_env *env, plan_ws *p, int np, fgt_tensors *ht, gpu_run_arg *g,
                       double *median_us, double *idle_us) {
    fg_context ctx = env->ctx;
    if (!env->gpu) {
        fg_status st;
        for (int w = 0; w < env->warmup; w++)
            for (int k = 0; k < np; k++)
                if ((st = fg_run(p[k].plan, &ht->t, p[k].ws, p[k].ws_bytes, NULL)) != FG_SUCCESS)
                    fail_fg(st, "fg_run (warm-up)");
        double *us = malloc(sizeof(double) * (size_t)(env->runs * np));
        if (!us) die("out of host memory");
        for (int i = 0; i < env->runs; i++)
            for (int k = 0; k < np; k++) {
                double t0 = now_us();
                st = fg_run(p[k].plan, &ht->t, p[k].ws, p[k].ws_bytes, NULL);
                us[k * env->runs + i] = now_us() - t0;
                if (st != FG_SUCCESS) fail_fg(st, "fg_run");
            }
        for (int k = 0; k < np; k++) median_us[k] = idle_us[k] = median(us + k * env->runs, env->runs);
        free(us);
        return;
    }
    for (int k = 0; k < np; k++) {
        g->plan = p[k].plan;
        g->ws = p[k].ws;
        g->ws_bytes = p[k].ws_bytes;
        g->st = FG_SUCCESS;
        for (int w = 0; w < env->warmup; w++) gpu_run_fn(g);
        double us = 0, idle = 0;
        GPU_CHECK(GPU(time_us, gpu_run_fn, g, env->runs, NULL, 1, &us));
        GPU_CHECK(GPU(time_us, gpu_run_fn, g, env->runs, NULL, 0, &idle));
        GPU_CHECK(GPU(synchronize, NULL));
        if (g->st != FG_SUCCESS) fail_fg(g->st, "fg_run (timed)");
        median_us[k] = us;
        idle_us[k] = idle;
    }
}

static void stats_of(fg_context ctx, const fg_attn_desc *a, fgt_batch *b, uint32_t flags,
                     fg_plan *plan, fg_plan_stats *st) {
    b->desc.flags = flags;
    fg_status s = fg_plan_create(ctx, a, &b->desc, plan);
    if (s != FG_SUCCESS) fail_fg(s, flags ? "fg_plan_create (no sharing)" : "fg_plan_create");
    if ((s = fg_plan_stats_get(*plan, st)) != FG_SUCCESS) fail_fg(s, "fg_plan_stats_get");
}

static void run_workload(bench_env *env, const options *opt, const wl_entry *wl, row_result *res) {
    fg_context ctx = env->ctx;
    memset(res, 0, sizeof *res);
    res->id = wl->id;
    res->what = fgt_workload_desc(wl->fgt_id);
    res->copies = 1;

    fg_attn_desc a;
    fgt_batch b;
    memset(&b, 0, sizeof b);
    if (fgt_batch_workload(wl->fgt_id, opt->scale, &a, &b))
        die("%s: fgt_batch_workload(scale %d) failed", wl->id, opt->scale);
    fgt_rng rng;
    fgt_rng_seed(&rng, opt->seed ^ (uint64_t)(wl - k_workloads + 1) * 0x9E3779B97F4A7C15ull);
    fgt_tensors ht;
    memset(&ht, 0, sizeof ht);
    if (fgt_tensors_random(&rng, &a, &b, 0, &ht)) die("%s: could not make random tensors", wl->id);

    /* Expected byte columns: the closed form at full scale, an independent count of the
     * distinct page slots otherwise (and as a cross-check at full scale too). */
    fgt_forest_expect fx;
    if (fgt_expected_forest(&b, a.page_size, &fx)) die("%s: fgt_expected_forest failed", wl->id);
    int64_t ut = fx.unique_tokens, nt = fx.total_tokens;
    char design_msg[200] = "";
    if (opt->scale == 1 && (ut != wl->unique_tokens || nt != wl->nonshared_tokens))
        snprintf(design_msg, sizeof design_msg, "the batch has %lld unique / %lld total tokens; "
                 "DESIGN.md's arithmetic says %lld / %lld", (long long)ut, (long long)nt,
                 (long long)wl->unique_tokens, (long long)wl->nonshared_tokens);
    int64_t per_tok = 2LL * a.num_kv_heads * a.head_dim_qk * fg_dtype_size(a.kv_dtype);
    res->expect_unique_bytes = ut * per_tok;
    res->expect_nonshared_bytes = nt * per_tok;
    res->flops = matrix_flops(&a, &b);

    fg_plan plan = NULL, plan_ns = NULL;
    stats_of(ctx, &a, &b, 0, &plan, &res->st);
    stats_of(ctx, &a, &b, FG_BATCH_NO_SHARING, &plan_ns, &res->st_ns);
    b.desc.flags = 0;
    res->unique_bytes = res->st.unique_kv_bytes;
    res->nonshared_bytes = res->st.nonshared_kv_bytes;
    res->qo_bytes = res->st.qo_bytes;

    int32_t reqs[4096];
    int nreq = pick_sample(b.desc.num_requests, opt->sample > 4096 ? 4096 : opt->sample, reqs);
    res->sampled_requests = nreq;

    /* GPU: device copies of everything; C copies of the KV cache for a cold L2. */
    gpu_run_arg g;
    memset(&g, 0, sizeof g);
    void *dq = NULL, *dout = NULL;
    float *dlse = NULL;
    size_t kv_bytes = (ht.k_elems + ht.v_elems) * 2;
    if (env->gpu) {
        int c = 2;
        if (ctx->props.l2_bytes > 0) {
            int64_t need = (2 * ctx->props.l2_bytes + (int64_t)kv_bytes - 1) / (int64_t)kv_bytes + 1;
            if (need > c) c = (int)need;
        }
        if (c > 16) c = 16;
        while (c > 2 && ctx->props.global_mem_bytes > 0 &&
               (int64_t)kv_bytes * c > ctx->props.global_mem_bytes / 2)
            c--;
        res->copies = c;
        g.copies = c;
        g.k_copies = calloc((size_t)c, sizeof(void *));
        g.v_copies = calloc((size_t)c, sizeof(void *));
        if (!g.k_copies || !g.v_copies) die("out of host memory");
        size_t kb = ht.k_elems * 2, vb = ht.v_elems * 2;
        for (int i = 0; i < c; i++) {
            GPU_CHECK(GPU(alloc, &g.k_copies[i], kb));
            GPU_CHECK(GPU(alloc, &g.v_copies[i], vb));
            GPU_CHECK(GPU(copy, g.k_copies[i], ht.k, kb, FG_COPY_H2D, NULL));
            GPU_CHECK(GPU(copy, g.v_copies[i], ht.v, vb, FG_COPY_H2D, NULL));
        }
        size_t qb = ht.q_elems * 2, ob = ht.o_elems * 2;
        GPU_CHECK(GPU(alloc, &dq, qb));
        GPU_CHECK(GPU(alloc, &dout, ob));
        GPU_CHECK(GPU(copy, dq, ht.q, qb, FG_COPY_H2D, NULL));
        if (ht.lse) {
            void *p = NULL;
            GPU_CHECK(GPU(alloc, &p, ht.lse_elems * sizeof(float)));
            dlse = p;
        }
        GPU_CHECK(GPU(synchronize, NULL));
        g.t = ht.t;
        g.t.q = dq;
        g.t.o = dout;
        g.t.lse = ht.lse ? dlse : NULL;
    }

    res->check_ok = 1;
    double eo = 0, el = 0;
    char msg[256] = "";
    plan_ws pw[2];
    plan_ws_prepare(env, plan, &pw[0]);
    plan_ws_prepare(env, plan_ns, &pw[1]);
    for (int p = 0; p < 2; p++) {
        checked_run(env, &pw[p], &ht, &g, &a);
        double o1 = 0, l1 = 0;
        if (!check_sample(&a, &b, &ht, reqs, nreq, &o1, &l1, msg, sizeof msg)) {
            if (res->check_ok)
                snprintf(res->check_msg, sizeof res->check_msg, "%s: %s",
                         p ? "non-shared" : "shared", msg);
            res->check_ok = 0;
        }
        if (o1 > eo || isnan(o1)) eo = o1;
        if (l1 > el || isnan(l1)) el = l1;
    }
    double med[2], idle[2];
    time_plans(env, pw, 2, &ht, &g, med, idle);
    res->shared_idle_us = idle[0];
    res->shared_us = med[0];
    res->nonshared_us = med[1];
    plan_ws_release(env, &pw[0]);
    plan_ws_release(env, &pw[1]);
    res->max_err_o = eo;
    res->max_err_lse = el;
    if (design_msg[0]) {
        if (res->check_ok) snprintf(res->check_msg, sizeof res->check_msg, "%s", design_msg);
        res->check_ok = 0;
    }
    if (res->unique_bytes != res->expect_unique_bytes ||
        res->nonshared_bytes != res->expect_nonshared_bytes) {
        if (res->check_ok)
            snprintf(res->check_msg, sizeof res->check_msg,
                     "byte stats %lld/%lld differ from the arithmetic %lld/%lld (unique/non-shared)",
                     (long long)res->unique_bytes, (long long)res->nonshared_bytes,
                     (long long)res->expect_unique_bytes, (long long)res->expect_nonshared_bytes);
        res->check_ok = 0;
    }

    double mem_us = (double)(res->unique_bytes + res->qo_bytes) / (env->copy_gbs * 1e3);
    double mma_us = res->flops / (env->matrix_tflops * 1e6);
    res->floor_us = mem_us > mma_us ? mem_us : mma_us;
    res->bound = mem_us > mma_us ? "mem" : "mma";

    if (env->gpu) {
        for (int i = 0; i < g.copies; i++) {
            GPU_CHECK(GPU(free_, g.k_copies[i]));
            GPU_CHECK(GPU(free_, g.v_copies[i]));
        }
        GPU_CHECK(GPU(free_, dq));
        GPU_CHECK(GPU(free_, dout));
        if (dlse) GPU_CHECK(GPU(free_, dlse));
        free(g.k_copies);
        free(g.v_copies);
    }
    fg_plan_destroy(plan);
    fg_plan_destroy(plan_ns);
    fgt_tensors_free(&ht);
    fgt_batch_free(&b);
}

/* ------------------------------------------------------------------ output */

static const char *backend_str(fg_backend_kind k) {
    switch (k) {
    case FG_BACKEND_CPU: return "cpu";
    case FG_BACKEND_CUDA: return "cuda";
    case FG_BACKEND_HIP: return "hip";
    default: return "auto";
    }
}

static void print_table(FILE *f, int md, const bench_env *env, const row_result *rows, int n) {
    const char *be = backend_str(env->info.backend);
    if (md) {
        fputs("| workload | backend | shared µs | non-shared µs | speedup | unique KV MB | non-shared KV MB "
              "| floor µs | bound | frac of floor | sharing | tasks | blocks | imbalance | predicted µs "
              "| shared µs from idle | check |\n",
              f);
        fputs("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n", f);
    } else {
        fprintf(f, "%-6s %-5s %11s %11s %7s %9s %10s %10s %5s %6s %3s %6s %6s %5s %11s %9s  %s\n", "wl",
                "bknd", "shared_us", "nonshr_us", "speedup", "uniq_MB", "nonshr_MB", "floor_us",
                "bound", "frac", "shr", "tasks", "blocks", "imbal", "pred_us", "idle_us", "check");
    }
    for (int i = 0; i < n; i++) {
        const row_result *r = &rows[i];
        char check[400];
        if (r->check_ok)
            snprintf(check, sizeof check, "PASS (max err O %.1e, LSE %.1e)", r->max_err_o, r->max_err_lse);
        else
            snprintf(check, sizeof check, "FAIL (max err O %.1e, LSE %.1e: %s)", r->max_err_o,
                     r->max_err_lse, r->check_msg);
        double speedup = r->nonshared_us / r->shared_us;
        double frac = r->floor_us / r->shared_us;
        if (md)
            fprintf(f, "| %s | %s | %.1f | %.1f | %.2fx | %.1f | %.1f | %.1f | %s | %.3f | %d | %d | %d | %.2f | %.1f | %.1f | %s |\n",
                    r->id, be, r->shared_us, r->nonshared_us, speedup, r->unique_bytes / 1e6,
                    r->nonshared_bytes / 1e6, r->floor_us, r->bound, frac, r->st.sharing_used,
                    r->st.num_tasks, r->st.num_blocks, r->st.imbalance, r->st.predicted_us,
                    r->shared_idle_us, check);
        else
            fprintf(f, "%-6s %-5s %11.1f %11.1f %6.2fx %9.1f %10.1f %10.1f %5s %6.3f %3d %6d %6d %5.2f %11.1f %9.1f  %s\n",
                    r->id, be, r->shared_us, r->nonshared_us, speedup, r->unique_bytes / 1e6,
                    r->nonshared_bytes / 1e6, r->floor_us, r->bound, frac, r->st.sharing_used,
                    r->st.num_tasks, r->st.num_blocks, r->st.imbalance, r->st.predicted_us,
                    r->shared_idle_us, check);
    }
}

static void write_stats_json(FILE *f, const char *key, const fg_plan_stats *s) {
    fprintf(f, "\"%s\":{\"num_requests\":%d,\"num_q_tokens\":%d,\"num_nodes\":%d,\"num_roots\":%d,"
            "\"max_depth\":%d,\"unique_kv_tokens\":%lld,\"nonshared_kv_tokens\":%lld,"
            "\"unique_kv_bytes\":%lld,\"nonshared_kv_bytes\":%lld,\"qo_bytes\":%lld,"
            "\"partial_bytes\":%lld,\"num_items\":%d,\"num_tasks\":%d,\"num_blocks\":%d,"
            "\"num_partials\":%d,\"sharing_used\":%d,\"predicted_us\":%.3f,"
            "\"predicted_nonshared_us\":%.3f,\"predicted_floor_us\":%.3f,\"imbalance\":%.4f,"
            "\"workspace_bytes\":%zu}",
            key, s->num_requests, s->num_q_tokens, s->num_nodes, s->num_roots, s->max_depth,
            (long long)s->unique_kv_tokens, (long long)s->nonshared_kv_tokens,
            (long long)s->unique_kv_bytes, (long long)s->nonshared_kv_bytes, (long long)s->qo_bytes,
            (long long)s->partial_bytes, s->num_items, s->num_tasks, s->num_blocks, s->num_partials,
            s->sharing_used, s->predicted_us, s->predicted_nonshared_us, s->predicted_floor_us,
            s->imbalance, s->workspace_bytes);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    options opt;
    parse_args(argc, argv, &opt);

    fg_context_options co;
    fg_context_options_init(&co);
    co.backend = opt.backend;
    co.num_threads = opt.threads;
    bench_env env;
    memset(&env, 0, sizeof env);
    fg_status st = fg_context_create(&co, &env.ctx);
    if (st != FG_SUCCESS)
        die("fg_context_create(backend %s): %s: %s", opt.backend_name, fg_status_string(st),
            fg_last_error());
    if ((st = fg_context_info_get(env.ctx, &env.info)) != FG_SUCCESS) fail_fg(st, "fg_context_info_get");
    env.gpu = env.info.backend != FG_BACKEND_CPU;
    if (env.gpu && !env.ctx->gpu) die("the context reports a GPU backend but has no backend table");

    int quick = opt.scale > 1;
    env.warmup = opt.warmup >= 0 ? opt.warmup : (env.gpu ? 3 : 1);
    if (env.warmup < 1) env.warmup = 1; /* the first run is the checked one */
    env.runs = opt.runs > 0 ? opt.runs : (env.gpu ? 20 : (quick ? 5 : 3));

    if (env.gpu) {
        env.copy_gbs = gpu_copy_gbs(env.ctx);
        /* The floor's matrix term needs the chip's rate, not the kernel's achieved one (a
         * measured calibration table holds the latter): the backend measures it with a
         * register-only matrix-instruction loop on every SM. The table is the fallback. */
        double t = 0.0;
        char m[256] = "";
        if (env.ctx->gpu->matrix_tflops &&
            env.ctx->gpu->matrix_tflops(env.ctx->gpu_state, &t, m, sizeof m) == FG_SUCCESS && t > 0.0) {
            env.matrix_tflops = t;
            env.matrix_src = "measured: backend matrix_tflops, register-only fp16->fp32 matrix "
                             "instructions on every SM (mma.sync m16n8k16 on NVIDIA, MFMA on CDNA)";
        } else {
            if (m[0]) fprintf(stderr, "forgeattn-bench: matrix_tflops: %s\n", m);
            env.matrix_tflops = env.ctx->cost.mma_tflops_f16;
            env.matrix_src = env.info.calibration_measured
                                 ? "calibration table (measured: the kernel's achieved rate, too low for a floor)"
                                 : "calibration table (estimated)";
        }
    } else {
        env.copy_gbs = cpu_copy_gbs(env.info.compute_units);
        env.matrix_tflops = cpu_matrix_gflops(env.info.compute_units) * 1e-3;
        env.matrix_src = "measured: fp32 4x16xK multiply-add loop on every thread";
    }
    if (!(env.copy_gbs > 0) || !(env.matrix_tflops > 0))
        die("could not measure the floor's rates (copy %.1f GB/s, matrix %.3f TFLOP/s)", env.copy_gbs,
            env.matrix_tflops);

    char date[64];
    time_t tnow = time(NULL);
    struct tm tmv;
    gmtime_r(&tnow, &tmv);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    const char *commit = getenv("FG_BENCH_COMMIT");
    if (!commit || !*commit) commit = FG_BENCH_GIT;
    const char *be = backend_str(env.info.backend);

    char scale_desc[160];
    if (opt.scale == 1) snprintf(scale_desc, sizeof scale_desc, "full DESIGN.md sizes");
    else snprintf(scale_desc, sizeof scale_desc, "every length / %d%s", opt.scale,
                  opt.scale == 8 ? " (--quick)" : "");
    char cold[256];
    if (env.gpu)
        snprintf(cold, sizeof cold, "GPU cold L2: each timed call reads the next of C copies of the "
                 "KV cache (C per row: JSON kv_copies; L2 %.1f MB)", env.ctx->props.l2_bytes / 1e6);
    else {
        /* Other processes on the same cores skew wall-clock times: say how busy it was. */
        char load[64] = "?";
        FILE *lf = fopen("/proc/loadavg", "r");
        if (lf) {
            if (!fgets(load, sizeof load, lf)) snprintf(load, sizeof load, "?");
            fclose(lf);
            load[strcspn(load, "\n")] = 0;
        }
        snprintf(cold, sizeof cold, "CPU: shared and non-shared runs interleaved, caches not "
                 "flushed (full-scale KV caches dwarf the LLC); /proc/loadavg at start: %.40s", load);
    }

    FILE *out = stdout;
    fprintf(out, "forgeattn-bench: device \"%s\" (%s, %d units), backend %s, build \"%s\", commit %s, "
            "library %s, date %s\n",
            env.info.device_name, env.info.arch, env.info.compute_units, be, FG_BENCH_BUILD, commit,
            fg_version_string(), date);
    fprintf(out, "scale: %s; fp16, head_dim 128, page size 16, q_len 1 (tests/support/workloads.h)\n",
            scale_desc);
    fprintf(out, "floor = max((unique KV + Q/O bytes) / copy bandwidth, matrix flops / matrix rate); "
            "copy bandwidth %.1f GB/s (read+write of a large %s copy), matrix rate %.4g TFLOP/s (%s)\n",
            env.copy_gbs, env.gpu ? "device-to-device" : "memcpy", env.matrix_tflops, env.matrix_src);
    fprintf(out, "timing: %s, median of %d runs after %d warm-up runs; %s\n",
            env.gpu ? "backend time_us (events around each fg_run, queued behind a spin kernel so "
                      "they bracket device time only; idle_us = the shared plan launched from an idle "
                      "device, host submission included)"
                    : "wall clock of fg_run (idle_us = the same)",
            env.runs, env.warmup, cold);
    fprintf(out, "check: O and LSE of both plans vs the double-precision reference on %d requests per "
            "workload spread evenly (first and last included); tolerances fp16 O %.0e, LSE %.0e; "
            "byte stats vs the workload arithmetic\n",
            opt.sample, fgt_tolerance_o(FG_DTYPE_FP16), fgt_tolerance_lse(FG_DTYPE_FP16));
    fprintf(out, "calibration: %s\n", env.info.calibration_source);
    fprintf(out, "columns: shared/non-shared = fg_run with sharing / with FG_BATCH_NO_SHARING; speedup = "
            "non-shared / shared; frac = floor / shared time; shr tasks blocks imbal pred_us = the "
            "shared plan's stats\n\n");
    fflush(out);

    FILE *js = NULL;
    if (opt.json_path) {
        js = fopen(opt.json_path, "w");
        if (!js) die("cannot write %s", opt.json_path);
        fprintf(js, "{\"record\":\"device\",\"device\":");
        json_str(js, env.info.device_name);
        fprintf(js, ",\"arch\":");
        json_str(js, env.info.arch);
        fprintf(js, ",\"compute_units\":%d,\"backend\":\"%s\",\"build\":", env.info.compute_units, be);
        json_str(js, FG_BENCH_BUILD);
        fprintf(js, ",\"commit\":");
        json_str(js, commit);
        fprintf(js, ",\"library_version\":\"%s\",\"date\":\"%s\",\"scale\":%d,\"runs\":%d,\"warmup\":%d,"
                "\"copy_gbs\":%.3f,\"matrix_tflops\":%.4f,\"matrix_rate_source\":",
                fg_version_string(), date, opt.scale, env.runs, env.warmup, env.copy_gbs, env.matrix_tflops);
        json_str(js, env.matrix_src);
        fprintf(js, ",\"cold_cache\":");
        json_str(js, cold);
        fprintf(js, ",\"calibration\":");
        json_str(js, env.info.calibration_source);
        fprintf(js, ",\"sample_requests\":%d}\n", opt.sample);
        fflush(js);
    }

    row_result rows[MAX_WORKLOADS];
    int n = 0, failed = 0;
    for (int w = 0; w < NUM_WORKLOADS; w++) {
        if (!only_has(&opt, k_workloads[w].id)) continue;
        double t0 = now_us();
        fprintf(stderr, "forgeattn-bench: %s (%s)...\n", k_workloads[w].id,
                fgt_workload_desc(k_workloads[w].fgt_id));
        run_workload(&env, &opt, &k_workloads[w], &rows[n]);
        row_result *r = &rows[n];
        if (!r->check_ok) failed++;
        fprintf(stderr, "forgeattn-bench: %s done in %.1f s: shared %.1f us, non-shared %.1f us, "
                "%d KV cop%s, %s\n", r->id, (now_us() - t0) * 1e-6, r->shared_us, r->nonshared_us,
                r->copies, r->copies == 1 ? "y" : "ies", r->check_ok ? "PASS" : "FAIL");
        if (js) {
            fprintf(js, "{\"record\":\"row\",\"workload\":\"%s\",\"what\":", r->id);
            json_str(js, r->what ? r->what : "");
            fprintf(js, ",\"backend\":\"%s\","
                    "\"shared_us\":%.3f,\"shared_idle_us\":%.3f,\"nonshared_us\":%.3f,\"speedup\":%.4f,"
                    "\"unique_kv_bytes\":%lld,\"nonshared_kv_bytes\":%lld,\"qo_bytes\":%lld,"
                    "\"expected_unique_kv_bytes\":%lld,\"expected_nonshared_kv_bytes\":%lld,"
                    "\"matrix_flops\":%.0f,\"floor_us\":%.3f,\"floor_bound\":\"%s\",\"frac_of_floor\":%.4f,"
                    "\"kv_copies\":%d,\"check\":\"%s\",\"max_err_o\":%.3e,\"max_err_lse\":%.3e,"
                    "\"check_msg\":",
                    be, r->shared_us, r->shared_idle_us, r->nonshared_us, r->nonshared_us / r->shared_us,
                    (long long)r->unique_bytes, (long long)r->nonshared_bytes, (long long)r->qo_bytes,
                    (long long)r->expect_unique_bytes, (long long)r->expect_nonshared_bytes, r->flops,
                    r->floor_us, r->bound, r->floor_us / r->shared_us, r->copies,
                    r->check_ok ? "PASS" : "FAIL", r->max_err_o, r->max_err_lse);
            json_str(js, r->check_msg);
            fprintf(js, ",\"sampled_requests\":%d,", r->sampled_requests);
            write_stats_json(js, "stats", &r->st);
            fputc(',', js);
            write_stats_json(js, "nonshared_stats", &r->st_ns);
            char repro[512];
            int rl = snprintf(repro, sizeof repro, "%s --backend %s --only %s --scale %d --runs %d "
                              "--warmup %d --sample %d --seed %llu",
                              argv[0], be, r->id, opt.scale, env.runs, env.warmup, opt.sample,
                              (unsigned long long)opt.seed);
            if (opt.threads && rl > 0 && (size_t)rl < sizeof repro)
                snprintf(repro + rl, sizeof repro - (size_t)rl, " --threads %d", opt.threads);
            fprintf(js, ",\"repro\":");
            json_str(js, repro);
            fputs("}\n", js);
            fflush(js);
        }
        n++;
    }

    print_table(out, opt.markdown, &env, rows, n);
    if (opt.md_path) {
        FILE *mf = fopen(opt.md_path, "w");
        if (!mf) die("cannot write %s", opt.md_path);
        fprintf(mf, "forgeattn-bench: device \"%s\", backend %s, build \"%s\", commit %s, library %s, "
                "date %s; %s; copy bandwidth %.1f GB/s; matrix rate %.4g TFLOP/s\n\n",
                env.info.device_name, be, FG_BENCH_BUILD, commit, fg_version_string(), date, scale_desc,
                env.copy_gbs, env.matrix_tflops);
        print_table(mf, 1, &env, rows, n);
        fclose(mf);
    }
    if (js) fclose(js);
    fprintf(out, "\nforgeattn-bench: %d workloads, %d passed, %d failed\n", n, n - failed, failed);
    fg_context_destroy(env.ctx);
    return failed ? 1 : 0;
}
