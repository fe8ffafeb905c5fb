/*
 * Property guarded: every public entry point rejects bad input with its SPECIFIC
 * fg_status and a thread-local message that names the offending field, without
 * touching caller memory (output handles, output tensors, workspaces, input arrays are
 * compared against snapshots) and without leaking (the sanitizer build checks leaks).
 * Also: fg_status_string covers every status, the version macros match fg_version(),
 * and fg_block_table_to_csr converts dense vLLM block tables correctly.
 * Run as: test_api errors | context | csr
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend.h"
#include "fgtest.h"

static fg_context g_ctx;

#define SENTINEL_PLAN ((fg_plan)(uintptr_t)0x5eed5eedu)
#define SENTINEL_CTX ((fg_context)(uintptr_t)0xc0ffee00u)

/* 0 when `got` is `want` and the message names `needle`; otherwise prints why. */
static int check_msg(const char *what, fg_status got, fg_status want, const char *needle) {
    const char *m = fg_last_error();
    if (got != want) {
        print_error("%s: got %s, want %s (message: %s)\n", what, fg_status_string(got), fg_status_string(want), m);
        return 1;
    }
    if (!m || !*m) {
        print_error("%s: empty fg_last_error()\n", what);
        return 1;
    }
    if (needle && !strstr(m, needle)) {
        print_error("%s: message \"%s\" does not name \"%s\"\n", what, m, needle);
        return 1;
    }
    return 0;
}

static void expect_msg(const char *what, fg_status got, fg_status want, const char *needle) {
    if (check_msg(what, got, want, needle)) fail_msg("%s: wrong status or message (above)", what);
}

/* ------------------------------------------------------------- plan_create cases */

/* A valid base batch (page size 4): r0 and r1 share page 5 and partly filled page 1. */
typedef struct inputs {
    fg_attn_desc a;
    fg_batch_desc b;
    int32_t q_len[4], kv_len[4], indptr[5], indices[16];
    fg_tree_desc tree;
    int32_t parent[4], length[4], rnode[4];
} inputs;

static void base_inputs(inputs *x) {
    memset(x, 0, sizeof *x);
    x->a = (fg_attn_desc){.num_q_heads = 8, .num_kv_heads = 2, .layout = FG_LAYOUT_GQA, .head_dim_qk = 16,
                          .head_dim_v = 16, .q_dtype = FG_DTYPE_FP16, .kv_dtype = FG_DTYPE_FP16, .page_size = 4};
    int32_t q[] = {1, 2, 1}, kv[] = {6, 8, 5}, ip[] = {0, 2, 4, 6}, idx[] = {5, 1, 5, 1, 5, 2};
    memcpy(x->q_len, q, sizeof q);
    memcpy(x->kv_len, kv, sizeof kv);
    memcpy(x->indptr, ip, sizeof ip);
    memcpy(x->indices, idx, sizeof idx);
    /* tree: 0 root (4), 1 <- 0 (2), 2 <- 1 (2), 3 <- 0 (1); requests end at 1, 2, 3 */
    int32_t par[] = {-1, 0, 1, 0}, len[] = {4, 2, 2, 1}, rn[] = {1, 2, 3};
    memcpy(x->parent, par, sizeof par);
    memcpy(x->length, len, sizeof len);
    memcpy(x->rnode, rn, sizeof rn);
    x->tree = (fg_tree_desc){4, x->parent, x->length, x->rnode};
    x->b = (fg_batch_desc){.num_requests = 3, .q_len = x->q_len, .kv_len = x->kv_len, .page_indptr = x->indptr,
                           .page_indices = x->indices, .num_pages = 8};
}

typedef struct bad_case {
    const char *what;
    fg_status want;
    const char *needle;
    void (*mutate)(inputs *x);
} bad_case;

#define M(name, body) static void name(inputs *x) { body; }
M(m_qheads0, x->a.num_q_heads = 0)
M(m_qheads_neg, x->a.num_q_heads = -8)
M(m_kvheads_neg, x->a.num_kv_heads = -1)
M(m_not_multiple, (x->a.num_q_heads = 8, x->a.num_kv_heads = 3))
M(m_mha_32_8, (x->a.num_q_heads = 32, x->a.num_kv_heads = 8, x->a.layout = FG_LAYOUT_MHA))
M(m_mqa_2, x->a.layout = FG_LAYOUT_MQA)
M(m_gta, x->a.layout = FG_LAYOUT_GTA)
M(m_mla, x->a.layout = FG_LAYOUT_MLA)
M(m_gla, x->a.layout = FG_LAYOUT_GLA)
M(m_layout_bad, x->a.layout = (fg_layout)17)
M(m_dqk0, x->a.head_dim_qk = 0)
M(m_dv_odd, x->a.head_dim_v = 7)
M(m_dqk_big, x->a.head_dim_qk = 512)
M(m_qdtype, x->a.q_dtype = (fg_dtype)5)
M(m_kvdtype, x->a.kv_dtype = (fg_dtype)-1)
M(m_ps0, x->a.page_size = 0)
M(m_scale_nan, x->a.scale = NAN)
M(m_kvbegin, x->a.kv_head_begin = 2)
M(m_kvcount, (x->a.kv_head_begin = 1, x->a.kv_head_count = 2))
M(m_kvcount_neg, x->a.kv_head_count = -1)
M(m_nreq0, x->b.num_requests = 0)
M(m_nreq_neg, x->b.num_requests = -3)
M(m_qlen_null, x->b.q_len = NULL)
M(m_kvlen_null, x->b.kv_len = NULL)
M(m_indptr_null, x->b.page_indptr = NULL)
M(m_indices_null, x->b.page_indices = NULL)
M(m_npages0, x->b.num_pages = 0)
M(m_flags, x->b.flags = 0x80u)
M(m_flags_both, x->b.flags = FG_BATCH_NO_SHARING | FG_BATCH_FORCE_SHARING)
M(m_indptr0, (x->indptr[0] = 1))
M(m_qlen0, x->q_len[1] = 0)
M(m_qlen_gt_kv, x->q_len[1] = 9)
M(m_indptr_mono, (x->indptr[2] = 1))
M(m_pagecount, (x->kv_len[0] = 9)) /* needs 3 pages, lists 2 */
M(m_page_oob, x->indices[3] = 8)
M(m_page_neg, x->indices[5] = -1)
/* an explicit tree reads the root's pages through request 0: request 1's copy of them is
 * never read, and must still be checked */
M(m_tree_page_oob, (x->b.tree = &x->tree, x->b.flags = FG_BATCH_FORCE_SHARING, x->indices[2] = 8))
M(m_tree_cycle, (x->b.tree = &x->tree, x->parent[0] = 2))
M(m_tree_pathlen, (x->b.tree = &x->tree, x->length[3] = 3))
M(m_tree_parent_oob, (x->b.tree = &x->tree, x->parent[2] = 4))
M(m_tree_len0, (x->b.tree = &x->tree, x->length[2] = 0))
M(m_tree_rnode, (x->b.tree = &x->tree, x->rnode[2] = 9))
M(m_tree_parent_null, (x->b.tree = &x->tree, x->tree.parent = NULL))
#undef M

static const bad_case k_cases[] = {
    {"num_q_heads 0", FG_ERR_INVALID_VALUE, "num_q_heads", m_qheads0},
    {"num_q_heads negative", FG_ERR_INVALID_VALUE, "num_q_heads", m_qheads_neg},
    {"num_kv_heads negative", FG_ERR_INVALID_VALUE, "num_kv_heads", m_kvheads_neg},
    {"num_q_heads % num_kv_heads", FG_ERR_SHAPE_MISMATCH, "num_kv_heads", m_not_multiple},
    {"MHA with 32/8 heads", FG_ERR_SHAPE_MISMATCH, "MHA", m_mha_32_8},
    {"MQA with 2 KV heads", FG_ERR_SHAPE_MISMATCH, "MQA", m_mqa_2},
    {"layout GTA", FG_ERR_UNSUPPORTED, "GTA", m_gta},
    {"layout MLA", FG_ERR_UNSUPPORTED, "MLA", m_mla},
    {"layout GLA", FG_ERR_UNSUPPORTED, "GLA", m_gla},
    {"layout out of range", FG_ERR_INVALID_VALUE, "layout", m_layout_bad},
    {"head_dim_qk 0", FG_ERR_INVALID_VALUE, "head_dim_qk", m_dqk0},
    {"head_dim_v odd", FG_ERR_INVALID_VALUE, "head_dim_v", m_dv_odd},
    {"head_dim_qk too big", FG_ERR_INVALID_VALUE, "head_dim_qk", m_dqk_big},
    {"q_dtype out of range", FG_ERR_INVALID_VALUE, "q_dtype", m_qdtype},
    {"kv_dtype negative", FG_ERR_INVALID_VALUE, "kv_dtype", m_kvdtype},
    {"page_size 0", FG_ERR_INVALID_VALUE, "page_size", m_ps0},
    {"scale NaN", FG_ERR_INVALID_VALUE, "scale", m_scale_nan},
    {"kv_head_begin == num_kv_heads", FG_ERR_INVALID_VALUE, "kv_head_begin", m_kvbegin},
    {"kv_head_begin + count > num_kv_heads", FG_ERR_SHAPE_MISMATCH, "kv_head_count", m_kvcount},
    {"kv_head_count negative", FG_ERR_INVALID_VALUE, "kv_head_count", m_kvcount_neg},
    {"num_requests 0", FG_ERR_INVALID_VALUE, "num_requests", m_nreq0},
    {"num_requests negative", FG_ERR_INVALID_VALUE, "num_requests", m_nreq_neg},
    {"q_len NULL", FG_ERR_NULL_POINTER, "q_len", m_qlen_null},
    {"kv_len NULL", FG_ERR_NULL_POINTER, "kv_len", m_kvlen_null},
    {"page_indptr NULL", FG_ERR_NULL_POINTER, "page_indptr", m_indptr_null},
    {"page_indices NULL", FG_ERR_NULL_POINTER, "page_indices", m_indices_null},
    {"num_pages 0", FG_ERR_INVALID_VALUE, "num_pages", m_npages0},
    {"unknown flags", FG_ERR_INVALID_VALUE, "flags", m_flags},
    {"contradictory flags", FG_ERR_INVALID_VALUE, "flags", m_flags_both},
    {"page_indptr[0] != 0", FG_ERR_INVALID_VALUE, "page_indptr[0]", m_indptr0},
    {"q_len 0", FG_ERR_INVALID_VALUE, "q_len[1]", m_qlen0},
    {"q_len > kv_len", FG_ERR_SHAPE_MISMATCH, "kv_len[1]", m_qlen_gt_kv},
    {"page_indptr not monotonic", FG_ERR_INVALID_VALUE, "page_indptr[2]", m_indptr_mono},
    {"page count wrong for kv_len", FG_ERR_SHAPE_MISMATCH, "kv_len[0]", m_pagecount},
    {"page id == num_pages", FG_ERR_PAGE_OUT_OF_RANGE, "page_indices[3]", m_page_oob},
    {"page id negative", FG_ERR_PAGE_OUT_OF_RANGE, "page_indices[5]", m_page_neg},
    {"tree: page id out of range under a shared node", FG_ERR_PAGE_OUT_OF_RANGE, "page_indices[2]", m_tree_page_oob},
    {"tree with a cycle", FG_ERR_INVALID_TREE, "cycle", m_tree_cycle},
    {"tree path length != kv_len", FG_ERR_INVALID_TREE, "request 2", m_tree_pathlen},
    {"tree parent out of range", FG_ERR_INVALID_TREE, "parent[2]", m_tree_parent_oob},
    {"tree zero-length node", FG_ERR_INVALID_TREE, "length[2]", m_tree_len0},
    {"tree request_node out of range", FG_ERR_INVALID_TREE, "request_node[2]", m_tree_rnode},
    {"tree parent NULL", FG_ERR_NULL_POINTER, "parent", m_tree_parent_null},
};

static void t_plan_create_bad(void **state) {
    (void)state;
    /* The base inputs are valid: otherwise every case below would prove nothing. */
    inputs x;
    base_inputs(&x);
    fg_plan plan = NULL;
    assert_int_equal(fg_plan_create(g_ctx, &x.a, &x.b, &plan), FG_SUCCESS);
    fg_plan_destroy(plan);
    x.b.tree = &x.tree;
    assert_int_equal(fg_plan_create(g_ctx, &x.a, &x.b, &plan), FG_SUCCESS);
    fg_plan_destroy(plan);

    /* Every case runs even after a failure, so one report lists all wrong statuses. */
    int bad = 0;
    const size_t n = sizeof k_cases / sizeof k_cases[0];
    for (size_t i = 0; i < n; i++) {
        const bad_case *c = &k_cases[i];
        base_inputs(&x);
        c->mutate(&x);
        inputs before;
        memcpy(&before, &x, sizeof x); /* snapshot of every byte the caller owns */
        plan = SENTINEL_PLAN;
        fg_status st = fg_plan_create(g_ctx, &x.a, &x.b, &plan);
        if (st == FG_SUCCESS) fg_plan_destroy(plan);
        bad += check_msg(c->what, st, c->want, c->needle);
        if (st != FG_SUCCESS && plan != SENTINEL_PLAN) {
            print_error("%s: *plan was written on failure\n", c->what);
            bad++;
        }
        if (memcmp(&before, &x, sizeof x) != 0) {
            print_error("%s: caller's descriptors were modified\n", c->what);
            bad++;
        }
    }
    print_message("%zu bad plan inputs, %d wrong\n", n, bad);
    if (bad) fail_msg("%d of %zu bad plan inputs not rejected as specified (listed above)", bad, n);
}

static void t_plan_create_null_args(void **state) {
    (void)state;
    inputs x;
    base_inputs(&x);
    fg_plan plan = SENTINEL_PLAN;
    expect_msg("ctx NULL", fg_plan_create(NULL, &x.a, &x.b, &plan), FG_ERR_NULL_POINTER, "ctx");
    expect_msg("attn NULL", fg_plan_create(g_ctx, NULL, &x.b, &plan), FG_ERR_NULL_POINTER, "attn");
    expect_msg("batch NULL", fg_plan_create(g_ctx, &x.a, NULL, &plan), FG_ERR_NULL_POINTER, "batch");
    assert_true(plan == SENTINEL_PLAN);
    expect_msg("plan NULL", fg_plan_create(g_ctx, &x.a, &x.b, NULL), FG_ERR_NULL_POINTER, "plan");
}

/* num_q_tokens would overflow int32: two requests of 0x7fff0000 new tokens each. */
static void t_overflow(void **state) {
    (void)state;
    const int32_t ps = 65536, big = 0x7fff0000, np = (int32_t)(((int64_t)big + ps - 1) / ps);
    int32_t q[2] = {big, big}, kv[2] = {big, big}, ip[3] = {0, np, 2 * np};
    int32_t *idx = calloc((size_t)(2 * np), sizeof(int32_t));
    assert_non_null(idx);
    fg_attn_desc a = {.num_q_heads = 1, .num_kv_heads = 1, .layout = FG_LAYOUT_MHA, .head_dim_qk = 8,
                      .head_dim_v = 8, .q_dtype = FG_DTYPE_FP32, .kv_dtype = FG_DTYPE_FP32, .page_size = ps};
    fg_batch_desc b = {.num_requests = 2, .q_len = q, .kv_len = kv, .page_indptr = ip, .page_indices = idx,
                       .num_pages = 1};
    fg_plan plan = SENTINEL_PLAN;
    expect_msg("num_q_tokens overflow", fg_plan_create(g_ctx, &a, &b, &plan), FG_ERR_OVERFLOW, "q_len");
    assert_true(plan == SENTINEL_PLAN);
    free(idx);
}

/* ------------------------------------------------------------- upload / run */

typedef struct run_fixture {
    inputs x;
    fgt_batch b;
    fgt_tensors t;
    fg_plan plan;
    size_t ws;
    void *w;
    void *o_snap, *lse_snap;
    size_t o_bytes;
} run_fixture;

static void fixture(run_fixture *f) {
    memset(f, 0, sizeof *f);
    base_inputs(&f->x);
    assert_int_equal(fgt_batch_from_arrays(3, f->x.q_len, f->x.kv_len, f->x.indptr, f->x.indices, 8, &f->b), 0);
    fgt_rng rng;
    fgt_rng_seed(&rng, 7);
    assert_int_equal(fgt_tensors_random(&rng, &f->x.a, &f->b, 0, &f->t), 0);
    assert_int_equal(fg_plan_create(g_ctx, &f->x.a, &f->b.desc, &f->plan), FG_SUCCESS);
    assert_int_equal(fg_plan_workspace_size(f->plan, &f->ws), FG_SUCCESS);
    assert_true(f->ws > 0 && f->ws % 256 == 0);
    f->w = aligned_alloc(256, f->ws + 256);
    assert_non_null(f->w);
    memset(f->w, 0xa5, f->ws + 256);
    f->o_bytes = f->t.o_elems * 2;
    f->o_snap = malloc(f->o_bytes);
    f->lse_snap = malloc(f->t.lse_elems * 4);
    assert_true(f->o_snap && f->lse_snap);
    memcpy(f->o_snap, f->t.o, f->o_bytes);
    memcpy(f->lse_snap, f->t.lse, f->t.lse_elems * 4);
}

static void fixture_free(run_fixture *f) {
    fg_plan_destroy(f->plan);
    free(f->w);
    free(f->o_snap);
    free(f->lse_snap);
    fgt_tensors_free(&f->t);
    fgt_batch_free(&f->b);
}

static void outputs_untouched(run_fixture *f, const char *what) {
    if (memcmp(f->o_snap, f->t.o, f->o_bytes) != 0) fail_msg("%s: O was written on failure", what);
    if (memcmp(f->lse_snap, f->t.lse, f->t.lse_elems * 4) != 0) fail_msg("%s: LSE was written on failure", what);
}

static void t_upload_run_bad(void **state) {
    (void)state;
    run_fixture f;
    fixture(&f);
    unsigned char *pattern = malloc(f.ws + 256);
    assert_non_null(pattern);
    memcpy(pattern, f.w, f.ws + 256);

    /* Run before upload: the workspace holds no work list. */
    expect_msg("fg_run before upload", fg_run(f.plan, &f.t.t, f.w, f.ws, NULL), FG_ERR_NOT_UPLOADED, "fg_plan_upload");
    outputs_untouched(&f, "fg_run before upload");

    expect_msg("upload NULL plan", fg_plan_upload(NULL, f.w, f.ws, NULL), FG_ERR_NULL_POINTER, "plan");
    expect_msg("upload NULL workspace", fg_plan_upload(f.plan, NULL, f.ws, NULL), FG_ERR_NULL_POINTER, "workspace");
    expect_msg("upload workspace too small", fg_plan_upload(f.plan, f.w, f.ws - 1, NULL),
               FG_ERR_WORKSPACE_TOO_SMALL, "workspace");
    expect_msg("upload misaligned workspace", fg_plan_upload(f.plan, (char *)f.w + 1, f.ws, NULL),
               FG_ERR_INVALID_VALUE, "aligned");
    if (memcmp(pattern, f.w, f.ws + 256) != 0) fail_msg("a failed upload wrote into the workspace");

    size_t sz = 12345;
    expect_msg("workspace_size NULL plan", fg_plan_workspace_size(NULL, &sz), FG_ERR_NULL_POINTER, "plan");
    assert_true(sz == 12345);
    expect_msg("workspace_size NULL bytes", fg_plan_workspace_size(f.plan, NULL), FG_ERR_NULL_POINTER, "bytes");
    fg_plan_stats s, s0;
    memset(&s, 0x3c, sizeof s);
    s0 = s;
    expect_msg("stats NULL plan", fg_plan_stats_get(NULL, &s), FG_ERR_NULL_POINTER, "plan");
    assert_memory_equal(&s, &s0, sizeof s);
    expect_msg("stats NULL out", fg_plan_stats_get(f.plan, NULL), FG_ERR_NULL_POINTER, "stats");

    assert_int_equal(fg_plan_upload(f.plan, f.w, f.ws, NULL), FG_SUCCESS);
    fg_tensors t = f.t.t;
    expect_msg("run NULL plan", fg_run(NULL, &t, f.w, f.ws, NULL), FG_ERR_NULL_POINTER, "plan");
    expect_msg("run NULL tensors", fg_run(f.plan, NULL, f.w, f.ws, NULL), FG_ERR_NULL_POINTER, "tensors");
    expect_msg("run NULL workspace", fg_run(f.plan, &t, NULL, f.ws, NULL), FG_ERR_NULL_POINTER, "workspace");
    struct {
        const char *what;
        size_t off;
        fg_status want;
        const char *needle;
    } ptr_cases[] = {
        {"q NULL", offsetof(fg_tensors, q), FG_ERR_NULL_POINTER, "q"},
        {"k_cache NULL", offsetof(fg_tensors, k_cache), FG_ERR_NULL_POINTER, "k_cache"},
        {"v_cache NULL", offsetof(fg_tensors, v_cache), FG_ERR_NULL_POINTER, "v_cache"},
        {"o NULL", offsetof(fg_tensors, o), FG_ERR_NULL_POINTER, "tensors->o"},
    };
    for (size_t i = 0; i < 4; i++) {
        t = f.t.t;
        *(void **)((char *)&t + ptr_cases[i].off) = NULL;
        expect_msg(ptr_cases[i].what, fg_run(f.plan, &t, f.w, f.ws, NULL), ptr_cases[i].want, ptr_cases[i].needle);
        outputs_untouched(&f, ptr_cases[i].what);
    }
    struct {
        const char *what;
        size_t off;
        int64_t v;
        const char *needle;
    } stride_cases[] = {
        {"q_stride_head 0", offsetof(fg_tensors, q_stride_head), 0, "q_stride"},
        {"o_stride_token negative", offsetof(fg_tensors, o_stride_token), -5, "o_stride"},
        {"k_stride_page 0", offsetof(fg_tensors, k_stride_page), 0, "k_stride"},
        {"v_stride_head negative", offsetof(fg_tensors, v_stride_head), -1, "v_stride"},
        {"lse_stride_head 0", offsetof(fg_tensors, lse_stride_head), 0, "lse_stride"},
    };
    for (size_t i = 0; i < sizeof stride_cases / sizeof stride_cases[0]; i++) {
        t = f.t.t;
        *(int64_t *)((char *)&t + stride_cases[i].off) = stride_cases[i].v;
        expect_msg(stride_cases[i].what, fg_run(f.plan, &t, f.w, f.ws, NULL), FG_ERR_INVALID_VALUE,
                   stride_cases[i].needle);
        outputs_untouched(&f, stride_cases[i].what);
    }
    t = f.t.t;
    t.scale_override = NAN;
    expect_msg("scale_override NaN", fg_run(f.plan, &t, f.w, f.ws, NULL), FG_ERR_INVALID_VALUE, "scale_override");
    outputs_untouched(&f, "scale_override NaN");
    t = f.t.t;
    expect_msg("run workspace too small", fg_run(f.plan, &t, f.w, f.ws - 256, NULL), FG_ERR_WORKSPACE_TOO_SMALL,
               "workspace");
    outputs_untouched(&f, "run workspace too small");

    /* Another plan's workspace (uploaded for plan 2): not this plan's work list. */
    fg_plan p2;
    assert_int_equal(fg_plan_create(g_ctx, &f.x.a, &f.b.desc, &p2), FG_SUCCESS);
    void *w2 = aligned_alloc(256, f.ws);
    assert_non_null(w2);
    assert_int_equal(fg_plan_upload(p2, w2, f.ws, NULL), FG_SUCCESS);
    expect_msg("run with another plan's workspace", fg_run(f.plan, &t, w2, f.ws, NULL), FG_ERR_NOT_UPLOADED,
               "workspace");
    outputs_untouched(&f, "another plan's workspace");
    fg_plan_destroy(p2);
    free(w2);

    /* And the valid run succeeds, then NULL handles are accepted by destroy. */
    assert_int_equal(fg_run(f.plan, &t, f.w, f.ws, NULL), FG_SUCCESS);
    assert_int_equal(fg_plan_destroy(NULL), FG_SUCCESS);
    assert_int_equal(fg_context_destroy(NULL), FG_SUCCESS);

    fg_tensors dt;
    memset(&dt, 0x11, sizeof dt);
    fg_tensors dt0 = dt;
    expect_msg("default_strides NULL attn", fg_tensors_default_strides(NULL, &dt), FG_ERR_NULL_POINTER, "attn");
    assert_memory_equal(&dt, &dt0, sizeof dt);
    expect_msg("default_strides NULL tensors", fg_tensors_default_strides(&f.x.a, NULL), FG_ERR_NULL_POINTER,
               "tensors");
    free(pattern);
    fixture_free(&f);
}

/* fg_tensors_default_strides gives contiguous NHD strides and leaves pointers alone. */
static void t_default_strides(void **state) {
    (void)state;
    fg_attn_desc a = {.num_q_heads = 8, .num_kv_heads = 2, .layout = FG_LAYOUT_GQA, .head_dim_qk = 16,
                      .head_dim_v = 24, .q_dtype = FG_DTYPE_FP16, .kv_dtype = FG_DTYPE_FP16, .page_size = 4};
    fg_tensors t;
    memset(&t, 0, sizeof t);
    t.q = (const void *)&a;
    assert_int_equal(fg_tensors_default_strides(&a, &t), FG_SUCCESS);
    assert_true(t.q == (const void *)&a);
    assert_int_equal(t.q_stride_head, 16);
    assert_int_equal(t.q_stride_token, 8 * 16);
    assert_int_equal(t.o_stride_head, 24);
    assert_int_equal(t.o_stride_token, 8 * 24);
    assert_int_equal(t.k_stride_head, 16);
    assert_int_equal(t.k_stride_token, 2 * 16);
    assert_int_equal(t.k_stride_page, 4 * 2 * 16);
    assert_int_equal(t.v_stride_page, 4 * 2 * 24);
    assert_int_equal(t.lse_stride_head, 1);
    assert_int_equal(t.lse_stride_token, 8);
}

/* ------------------------------------------------------------- context */

static void *other_thread(void *arg) {
    (void)arg;
    fg_plan_create(NULL, NULL, NULL, NULL); /* fails on this thread only */
    return NULL;
}

static const char *tmpdir(void) {
    const char *d = getenv("FG_TEST_TMPDIR");
    return d && *d ? d : "/tmp";
}

static void t_context_bad(void **state) {
    (void)state;
    fg_context ctx = SENTINEL_CTX;
    fg_context_options o;
    expect_msg("options_init NULL", fg_context_options_init(NULL), FG_ERR_NULL_POINTER, "opts");
    expect_msg("create NULL out", fg_context_create(NULL, NULL), FG_ERR_NULL_POINTER, "ctx");

    fg_context_options_init(&o);
    o.num_threads = -1;
    expect_msg("num_threads negative", fg_context_create(&o, &ctx), FG_ERR_INVALID_VALUE, "num_threads");
    fg_context_options_init(&o);
    o.backend = (fg_backend_kind)9;
    expect_msg("backend out of range", fg_context_create(&o, &ctx), FG_ERR_INVALID_VALUE, "backend");
    fg_context_options_init(&o);
    o.backend = (fg_backend_kind)-1;
    expect_msg("backend negative", fg_context_create(&o, &ctx), FG_ERR_INVALID_VALUE, "backend");
    fg_context_options_init(&o);
    o.device_index = -2;
    expect_msg("device_index negative", fg_context_create(&o, &ctx), FG_ERR_INVALID_VALUE, "device_index");
    assert_true(ctx == SENTINEL_CTX);

    /* Calibration table that does not exist: FG_ERR_IO naming the file. */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such-dir/forgeattn-missing.txt", tmpdir());
    fg_context_options_init(&o);
    o.backend = FG_BACKEND_CPU;
    o.calibration_path = missing;
    expect_msg("calibration path missing", fg_context_create(&o, &ctx), FG_ERR_IO, missing);
    assert_true(ctx == SENTINEL_CTX);

    /* Malformed tables: FG_ERR_CALIBRATION naming the file and line. */
    const char *bodies[] = {
        "this is not a calibration table\n",
        "", /* empty */
        "\x01\x02\x03 binary\n",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/fgtest-bad-calibration-%ld-%zu.txt", tmpdir(), (long)getpid(), i);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(bodies[i], fp);
        fclose(fp);
        o.calibration_path = path;
        fg_status st = fg_context_create(&o, &ctx);
        remove(path);
        expect_msg("malformed calibration table", st, FG_ERR_CALIBRATION, "line");
        assert_true(ctx == SENTINEL_CTX);
    }

    /* A GPU backend this build lacks: FG_ERR_NO_DEVICE (only asserted in CPU-only builds). */
    if (!fg_gpu_backend_ops()) {
        fg_context_options_init(&o);
        o.backend = FG_BACKEND_CUDA;
        expect_msg("CUDA backend absent", fg_context_create(&o, &ctx), FG_ERR_NO_DEVICE, "backend");
        o.backend = FG_BACKEND_HIP;
        expect_msg("HIP backend absent", fg_context_create(&o, &ctx), FG_ERR_NO_DEVICE, "backend");
        assert_true(ctx == SENTINEL_CTX);
    }

    fg_context_info info, info0;
    memset(&info, 0x77, sizeof info);
    info0 = info;
    expect_msg("info NULL ctx", fg_context_info_get(NULL, &info), FG_ERR_NULL_POINTER, "ctx");
    assert_memory_equal(&info, &info0, sizeof info);
    expect_msg("info NULL out", fg_context_info_get(g_ctx, NULL), FG_ERR_NULL_POINTER, "info");

    /* The message is thread-local: another thread's failure leaves ours alone. */
    char mine[256];
    snprintf(mine, sizeof mine, "%s", fg_last_error());
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, other_thread, NULL), 0);
    pthread_join(th, NULL);
    assert_string_equal(mine, fg_last_error());
}

static void t_context_ok(void **state) {
    (void)state;
    fg_context_info info;
    assert_int_equal(fg_context_info_get(g_ctx, &info), FG_SUCCESS);
    assert_int_equal(info.backend, FG_BACKEND_CPU);
    assert_int_equal(info.warp_size, 1);
    assert_true(info.compute_units >= 1);
    assert_true(info.calibration_source[0] != 0);
    fg_context_options o;
    assert_int_equal(fg_context_options_init(&o), FG_SUCCESS);
    assert_int_equal(o.backend, FG_BACKEND_AUTO);
    assert_int_equal(o.num_threads, 0);
    assert_null(o.calibration_path);
}

static void t_status_strings(void **state) {
    (void)state;
    static const char *const names[] = {
        "FG_SUCCESS", "FG_ERR_NULL_POINTER", "FG_ERR_INVALID_VALUE", "FG_ERR_OVERFLOW", "FG_ERR_SHAPE_MISMATCH",
        "FG_ERR_PAGE_OUT_OF_RANGE", "FG_ERR_INVALID_TREE", "FG_ERR_UNSUPPORTED", "FG_ERR_OUT_OF_MEMORY",
        "FG_ERR_WORKSPACE_TOO_SMALL", "FG_ERR_NOT_UPLOADED", "FG_ERR_NO_DEVICE", "FG_ERR_DEVICE",
        "FG_ERR_CALIBRATION", "FG_ERR_IO", "FG_ERR_INTERNAL"};
    /* Pinned values: the enum must not be renumbered. */
    assert_int_equal(FG_ERR_INTERNAL, 15);
    assert_int_equal(FG_ERR_IO, 14);
    assert_int_equal(FG_ERR_NOT_UPLOADED, 10);
    for (int s = 0; s <= 15; s++) {
        const char *got = fg_status_string((fg_status)s);
        assert_non_null(got);
        assert_string_equal(got, names[s]);
    }
    assert_non_null(fg_status_string((fg_status)99));
    assert_non_null(fg_status_string((fg_status)-1));
    assert_true(strlen(fg_status_string((fg_status)99)) > 0);
}

static void t_version(void **state) {
    (void)state;
    assert_int_equal(fg_version(), FG_VERSION);
    assert_int_equal(FG_VERSION, FG_VERSION_MAJOR * 10000 + FG_VERSION_MINOR * 100 + FG_VERSION_PATCH);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", FG_VERSION_MAJOR, FG_VERSION_MINOR, FG_VERSION_PATCH);
    assert_string_equal(fg_version_string(), want);
}

/* ------------------------------------------------------------- csr */

static void t_csr(void **state) {
    (void)state;
    /* 3 requests, dense table [3][4] with row stride 5, page size 4. */
    int32_t table[15] = {10, 11, -1, -1, 99, 20, 21, 22, 23, 99, 30, -1, -1, -1, 99};
    int32_t kv[3] = {5, 16, 1};
    int64_t cap = 0;
    assert_int_equal(fg_block_table_to_csr(3, kv, 4, table, 5, 4, NULL, NULL, &cap), FG_SUCCESS);
    assert_int_equal(cap, 7);
    int32_t indptr[4], indices[8];
    memset(indptr, 0x5a, sizeof indptr);
    memset(indices, 0x5a, sizeof indices);
    int32_t ip0[4], ix0[8];
    memcpy(ip0, indptr, sizeof ip0);
    memcpy(ix0, indices, sizeof ix0);
    cap = 6;
    expect_msg("csr capacity too small", fg_block_table_to_csr(3, kv, 4, table, 5, 4, indptr, indices, &cap),
               FG_ERR_WORKSPACE_TOO_SMALL, "indices_capacity");
    assert_int_equal(cap, 7); /* documented: the count needed */
    assert_memory_equal(indptr, ip0, sizeof ip0);
    assert_memory_equal(indices, ix0, sizeof ix0);
    cap = 8;
    assert_int_equal(fg_block_table_to_csr(3, kv, 4, table, 5, 4, indptr, indices, &cap), FG_SUCCESS);
    int32_t want_ip[4] = {0, 2, 6, 7}, want_ix[7] = {10, 11, 20, 21, 22, 23, 30};
    assert_memory_equal(indptr, want_ip, sizeof want_ip);
    assert_memory_equal(indices, want_ix, sizeof want_ix);
    assert_int_equal(indices[7], ix0[7]); /* nothing past the needed count */

    /* The CSR it produces plans and runs like the hand-written one. */
    fg_attn_desc a = {.num_q_heads = 4, .num_kv_heads = 4, .layout = FG_LAYOUT_MHA, .head_dim_qk = 8,
                      .head_dim_v = 8, .q_dtype = FG_DTYPE_FP32, .kv_dtype = FG_DTYPE_FP32, .page_size = 4};
    int32_t q[3] = {1, 3, 1};
    fgt_batch b;
    assert_int_equal(fgt_batch_from_arrays(3, q, kv, indptr, indices, 31, &b), 0);
    fgt_rng rng;
    fgt_rng_seed(&rng, 11);
    fgt_tensors t;
    assert_int_equal(fgt_tensors_random(&rng, &a, &b, 0, &t), 0);
    assert_int_equal(fgt_run_cpu(g_ctx, &a, &b, &t, NULL), FG_SUCCESS);
    double o_ref[5 * 4 * 8], lse_ref[5 * 4];
    assert_int_equal(fgt_reference(&a, &b, &t, o_ref, lse_ref), 0);
    fgt_cmp cmp;
    if (fgt_compare(&a, &b, &t, o_ref, lse_ref, &cmp)) fail_msg("csr batch: %s", cmp.msg);
    fgt_tensors_free(&t);
    fgt_batch_free(&b);

    /* Bad inputs. */
    cap = 8;
    expect_msg("csr kv_len NULL", fg_block_table_to_csr(3, NULL, 4, table, 5, 4, indptr, indices, &cap),
               FG_ERR_NULL_POINTER, "kv_len");
    expect_msg("csr table NULL", fg_block_table_to_csr(3, kv, 4, NULL, 5, 4, indptr, indices, &cap),
               FG_ERR_NULL_POINTER, "block_table");
    expect_msg("csr capacity NULL", fg_block_table_to_csr(3, kv, 4, table, 5, 4, indptr, indices, NULL),
               FG_ERR_NULL_POINTER, "indices_capacity");
    expect_msg("csr indices NULL only", fg_block_table_to_csr(3, kv, 4, table, 5, 4, indptr, NULL, &cap),
               FG_ERR_NULL_POINTER, "indices");
    expect_msg("csr num_requests 0", fg_block_table_to_csr(0, kv, 4, table, 5, 4, indptr, indices, &cap),
               FG_ERR_INVALID_VALUE, "num_requests");
    expect_msg("csr page_size 0", fg_block_table_to_csr(3, kv, 0, table, 5, 4, indptr, indices, &cap),
               FG_ERR_INVALID_VALUE, "page_size");
    expect_msg("csr stride < max_pages", fg_block_table_to_csr(3, kv, 4, table, 3, 4, indptr, indices, &cap),
               FG_ERR_INVALID_VALUE, "stride");
    expect_msg("csr kv_len needs > max_pages", fg_block_table_to_csr(3, kv, 4, table, 5, 3, indptr, indices, &cap),
               FG_ERR_SHAPE_MISMATCH, "kv_len[1]");
    int32_t kv_bad[3] = {5, 0, 1};
    expect_msg("csr kv_len 0", fg_block_table_to_csr(3, kv_bad, 4, table, 5, 4, indptr, indices, &cap),
               FG_ERR_INVALID_VALUE, "kv_len[1]");
    assert_int_equal(cap, 8);
    assert_memory_equal(indptr, want_ip, sizeof want_ip);
}

/* ------------------------------------------------------------- main */

static int setup(void **state) {
    (void)state;
    return fgt_cpu_context(2, &g_ctx) == FG_SUCCESS ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fg_context_destroy(g_ctx);
    return 0;
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "errors";
    if (!strcmp(which, "errors")) {
        const struct CMUnitTest t[] = {
            cmocka_unit_test(t_plan_create_bad), cmocka_unit_test(t_plan_create_null_args),
            cmocka_unit_test(t_overflow),        cmocka_unit_test(t_upload_run_bad),
            cmocka_unit_test(t_default_strides),
        };
        return cmocka_run_group_tests_name("api.errors", t, setup, teardown);
    }
    if (!strcmp(which, "context")) {
        const struct CMUnitTest t[] = {
            cmocka_unit_test(t_context_bad), cmocka_unit_test(t_context_ok), cmocka_unit_test(t_status_strings),
            cmocka_unit_test(t_version),
        };
        return cmocka_run_group_tests_name("api.context", t, setup, teardown);
    }
    if (!strcmp(which, "csr")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(t_csr)};
        return cmocka_run_group_tests_name("api.csr", t, setup, teardown);
    }
    fprintf(stderr, "usage: %s errors|context|csr\n", argv[0]);
    return 2;
}
