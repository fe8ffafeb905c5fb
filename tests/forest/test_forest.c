/*
 * Property guarded: the prefix forest the library builds from block tables (or takes
 * from an explicit tree) is exactly the sharing the batch holds, no more and no less.
 *  - node count, roots, depth and unique tokens equal an independent computation (and,
 *    for hand-made batches, numbers worked out by hand);
 *  - every node's requests are one contiguous DFS rank range, nested in its parent's;
 *  - every request's root-to-node path holds exactly kv_len tokens;
 *  - tokens a node shares map to identical physical slots (page, slot) in the block
 *    table of every request under it (sharing is never invented);
 *  - plan stats report the same numbers; FG_BATCH_NO_SHARING gives one node per request;
 *  - a valid explicit tree gives the same forest as detection; invalid trees give
 *    FG_ERR_INVALID_TREE with a message naming the node or request.
 * Run as: test_forest handmade | random | tree
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fgtest.h"
#include "internal.h"

static fg_context g_ctx;

/* ------------------------------------------------------------- checks */

/* All structural properties of f for batch b. Fails the test with the batch's label. */
static void check_forest(const char *label, const fgt_batch *b, int32_t ps, const fg_forest *f) {
    const int32_t R = b->desc.num_requests, n = f->num_nodes;
    assert_int_equal(f->num_requests, R);
    assert_true(n >= 1);
    int64_t sum = 0, total = 0;
    int32_t roots = 0, maxd = 0;
    for (int32_t v = 0; v < n; v++) {
        int32_t p = f->parent[v];
        if (!(p >= -1 && p < v)) fail_msg("%s: node %d has parent %d (not DFS preorder)", label, v, p);
        if (f->length[v] < 1) fail_msg("%s: node %d has length %d", label, v, f->length[v]);
        int32_t want_begin = p < 0 ? 0 : f->begin[p] + f->length[p];
        if (f->begin[v] != want_begin)
            fail_msg("%s: node %d begins at %d, parent ends at %d", label, v, f->begin[v], want_begin);
        int32_t want_depth = p < 0 ? 1 : f->depth[p] + 1;
        if (f->depth[v] != want_depth) fail_msg("%s: node %d depth %d want %d", label, v, f->depth[v], want_depth);
        if (f->depth[v] > maxd) maxd = f->depth[v];
        roots += p < 0;
        sum += f->length[v];
        if (!(f->rank_lo[v] >= 0 && f->rank_lo[v] < f->rank_hi[v] && f->rank_hi[v] <= R))
            fail_msg("%s: node %d rank range [%d, %d) is empty or outside 0..%d", label, v, f->rank_lo[v],
                     f->rank_hi[v], R);
        if (p >= 0 && !(f->rank_lo[p] <= f->rank_lo[v] && f->rank_hi[v] <= f->rank_hi[p]))
            fail_msg("%s: node %d ranks [%d, %d) not inside parent %d's [%d, %d)", label, v, f->rank_lo[v],
                     f->rank_hi[v], p, f->rank_lo[p], f->rank_hi[p]);
        int32_t s = f->src_req[v];
        if (!(s >= 0 && s < R && f->rank_of_req[s] >= f->rank_lo[v] && f->rank_of_req[s] < f->rank_hi[v]))
            fail_msg("%s: node %d reads through request %d, which is not under it", label, v, s);
    }
    assert_int_equal(f->num_roots, roots);
    assert_int_equal(f->max_depth, maxd);
    assert_true(f->unique_tokens == sum);
    for (int32_t r = 0; r < R; r++) total += b->kv_len[r];
    assert_true(f->total_tokens == total);

    /* Ranks: a permutation, and each node's range = exactly the requests through it. */
    int32_t *cnt = calloc((size_t)n, sizeof(int32_t));
    assert_non_null(cnt);
    for (int32_t k = 0; k < R; k++) {
        int32_t r = f->req_at_rank[k];
        assert_true(r >= 0 && r < R);
        if (f->rank_of_req[r] != k) fail_msg("%s: rank_of_req[%d] = %d, req_at_rank[%d] = %d", label, r, f->rank_of_req[r], k, r);
    }
    for (int32_t r = 0; r < R; r++) {
        int32_t v = f->req_node[r];
        if (!(v >= 0 && v < n)) fail_msg("%s: req_node[%d] = %d", label, r, v);
        int64_t len = 0;
        for (; v >= 0; v = f->parent[v]) {
            len += f->length[v];
            cnt[v]++;
            if (!(f->rank_of_req[r] >= f->rank_lo[v] && f->rank_of_req[r] < f->rank_hi[v]))
                fail_msg("%s: request %d (rank %d) passes node %d outside its ranks [%d, %d)", label, r,
                         f->rank_of_req[r], v, f->rank_lo[v], f->rank_hi[v]);
        }
        if (len != b->kv_len[r])
            fail_msg("%s: request %d's path holds %lld tokens, kv_len %d", label, r, (long long)len, b->kv_len[r]);
    }
    for (int32_t v = 0; v < n; v++)
        if (cnt[v] != f->rank_hi[v] - f->rank_lo[v])
            fail_msg("%s: node %d has %d requests through it but rank range [%d, %d)", label, v, cnt[v],
                     f->rank_lo[v], f->rank_hi[v]);
    free(cnt);

    /* Sharing is real: each request under a node holds the node's tokens in the same
     * physical slots as the node's source request. */
    for (int32_t v = 0; v < n; v++)
        for (int32_t k = f->rank_lo[v]; k < f->rank_hi[v]; k++) {
            int32_t r = f->req_at_rank[k], s = f->src_req[v];
            for (int32_t p = f->begin[v]; p < f->begin[v] + f->length[v]; p++)
                if (fgt_slot(b, ps, r, p) != fgt_slot(b, ps, s, p))
                    fail_msg("%s: node %d position %d: request %d reads slot %lld, source request %d slot %lld",
                             label, v, p, r, (long long)fgt_slot(b, ps, r, p), s,
                             (long long)fgt_slot(b, ps, s, p));
        }
}

static void check_counts(const char *label, const fg_forest *f, const fgt_forest_expect *e) {
    if (f->num_nodes != e->num_nodes || f->num_roots != e->num_roots || f->max_depth != e->max_depth ||
        f->unique_tokens != e->unique_tokens || f->total_tokens != e->total_tokens)
        fail_msg("%s: forest nodes/roots/depth/unique/total = %d/%d/%d/%lld/%lld, expected %d/%d/%d/%lld/%lld", label,
                 f->num_nodes, f->num_roots, f->max_depth, (long long)f->unique_tokens,
                 (long long)f->total_tokens, e->num_nodes, e->num_roots, e->max_depth,
                 (long long)e->unique_tokens, (long long)e->total_tokens);
}

static fg_attn_desc small_attn(int32_t ps) {
    fg_attn_desc a;
    memset(&a, 0, sizeof a);
    a.num_q_heads = 4;
    a.num_kv_heads = 2;
    a.layout = FG_LAYOUT_GQA;
    a.head_dim_qk = 16;
    a.head_dim_v = 8;
    a.q_dtype = FG_DTYPE_FP16;
    a.kv_dtype = FG_DTYPE_FP16;
    a.page_size = ps;
    return a;
}

/* The same numbers through the public API's plan stats (sharing on and off). */
static void check_stats(const char *label, const fgt_batch *b, int32_t ps, const fgt_forest_expect *e) {
    fg_attn_desc a = small_attn(ps);
    fg_batch_desc d = b->desc;
    d.tree = NULL;
    fg_plan plan = NULL;
    fg_status st = fg_plan_create(g_ctx, &a, &d, &plan);
    if (st != FG_SUCCESS) fail_msg("%s: fg_plan_create: %s: %s", label, fg_status_string(st), fg_last_error());
    fg_plan_stats s;
    assert_int_equal(fg_plan_stats_get(plan, &s), FG_SUCCESS);
    if (s.num_nodes != e->num_nodes || s.num_roots != e->num_roots || s.max_depth != e->max_depth ||
        s.unique_kv_tokens != e->unique_tokens || s.nonshared_kv_tokens != e->total_tokens)
        fail_msg("%s: stats nodes/roots/depth/unique/total = %d/%d/%d/%lld/%lld, expected %d/%d/%d/%lld/%lld",
                 label, s.num_nodes, s.num_roots, s.max_depth, (long long)s.unique_kv_tokens,
                 (long long)s.nonshared_kv_tokens, e->num_nodes, e->num_roots, e->max_depth,
                 (long long)e->unique_tokens, (long long)e->total_tokens);
    assert_int_equal(s.num_requests, b->desc.num_requests);
    assert_int_equal(s.num_q_tokens, b->num_q_tokens);
    /* K+V bytes of the covered heads: 2 KV heads x (16 + 8) dims x 2 bytes per token. */
    int64_t per_tok = (int64_t)a.num_kv_heads * (a.head_dim_qk + a.head_dim_v) * 2;
    assert_true(s.unique_kv_bytes == e->unique_tokens * per_tok);
    assert_true(s.nonshared_kv_bytes == e->total_tokens * per_tok);
    fg_plan_destroy(plan);

    d.flags = FG_BATCH_NO_SHARING;
    assert_int_equal(fg_plan_create(g_ctx, &a, &d, &plan), FG_SUCCESS);
    assert_int_equal(fg_plan_stats_get(plan, &s), FG_SUCCESS);
    if (s.num_nodes != b->desc.num_requests || s.unique_kv_tokens != e->total_tokens || s.max_depth != 1)
        fail_msg("%s: FG_BATCH_NO_SHARING stats nodes/unique/depth = %d/%lld/%d, expected %d/%lld/1", label,
                 s.num_nodes, (long long)s.unique_kv_tokens, s.max_depth, b->desc.num_requests,
                 (long long)e->total_tokens);
    assert_int_equal(s.sharing_used, 0);
    fg_plan_destroy(plan);
}

/* Detection + all checks; hand-made batches also give hand-computed numbers (want). */
static void run_batch(const char *label, const fgt_batch *b, int32_t ps, const fgt_forest_expect *want) {
    fgt_forest_expect e;
    assert_int_equal(fgt_expected_forest(b, ps, &e), 0);
    if (want) { /* cross-check the independent computation itself */
        if (e.num_nodes != want->num_nodes || e.num_roots != want->num_roots || e.max_depth != want->max_depth ||
            e.unique_tokens != want->unique_tokens || e.total_tokens != want->total_tokens)
            fail_msg("%s: fgt_expected_forest gives %d/%d/%d/%lld/%lld, hand count %d/%d/%d/%lld/%lld", label,
                     e.num_nodes, e.num_roots, e.max_depth, (long long)e.unique_tokens, (long long)e.total_tokens,
                     want->num_nodes, want->num_roots, want->max_depth, (long long)want->unique_tokens,
                     (long long)want->total_tokens);
    }
    fg_forest f;
    memset(&f, 0, sizeof f);
    fg_status st = fg_forest_from_block_tables(&b->desc, ps, 0, &f);
    if (st != FG_SUCCESS) fail_msg("%s: fg_forest_from_block_tables: %s: %s", label, fg_status_string(st), fg_last_error());
    check_forest(label, b, ps, &f);
    check_counts(label, &f, &e);
    fg_forest_free(&f);

    /* No sharing: one single-node tree per request. */
    st = fg_forest_from_block_tables(&b->desc, ps, 1, &f);
    assert_int_equal(st, FG_SUCCESS);
    check_forest(label, b, ps, &f);
    assert_int_equal(f.num_nodes, b->desc.num_requests);
    assert_int_equal(f.num_roots, b->desc.num_requests);
    assert_int_equal(f.max_depth, 1);
    fg_forest_free(&f);

    check_stats(label, b, ps, &e);
}

/* Build a batch from per-request page lists (q_len 1). */
static void make(fgt_batch *b, int32_t n, const int32_t *kv, const int32_t *indptr, const int32_t *idx,
                 int32_t num_pages, int32_t ps) {
    int32_t q[64];
    for (int32_t i = 0; i < n; i++) q[i] = 1;
    assert_int_equal(fgt_batch_from_arrays(n, q, kv, indptr, idx, num_pages, b), 0);
    b->page_size = ps;
}

/* ------------------------------------------------------------- hand-made */

/* Page size 4. r0 and r1 share page 5 and the partly filled page 1 (r0 ends inside it,
 * r1 goes on in the same page), r2 shares only page 5. */
static void t_shared_partial_last_page(void **state) {
    (void)state;
    int32_t kv[] = {6, 8, 5}, ip[] = {0, 2, 4, 6}, idx[] = {5, 1, 5, 1, 5, 2};
    fgt_batch b;
    make(&b, 3, kv, ip, idx, 8, 4);
    fgt_forest_expect want = {4, 1, 3, 4 + 2 + 2 + 1, 19};
    run_batch("shared partial last page", &b, 4, &want);
    fgt_batch_free(&b);
}

/* Two requests hold the same partly filled last page and the same length: one node. */
static void t_identical_partial(void **state) {
    (void)state;
    int32_t kv[] = {7, 7, 7}, ip[] = {0, 2, 4, 6}, idx[] = {1, 2, 1, 2, 1, 2};
    fgt_batch b;
    make(&b, 3, kv, ip, idx, 3, 4);
    fgt_forest_expect want = {1, 1, 1, 7, 21};
    run_batch("identical requests", &b, 4, &want);
    fgt_batch_free(&b);
}

/* r1's whole KV (two full pages) is a prefix of r0's. */
static void t_prefix_of_other(void **state) {
    (void)state;
    int32_t kv[] = {12, 8}, ip[] = {0, 3, 5}, idx[] = {5, 6, 7, 5, 6};
    fgt_batch b;
    make(&b, 2, kv, ip, idx, 8, 4);
    fgt_forest_expect want = {2, 1, 2, 12, 20};
    run_batch("prefix of another", &b, 4, &want);
    fgt_batch_free(&b);
}

/* A single request whose one node spans several pages (a FlashForge bug site). */
static void t_single_request(void **state) {
    (void)state;
    int32_t kv[] = {9}, ip[] = {0, 3}, idx[] = {3, 0, 2};
    fgt_batch b;
    make(&b, 1, kv, ip, idx, 4, 4);
    fgt_forest_expect want = {1, 1, 1, 9, 9};
    run_batch("single request", &b, 4, &want);
    fgt_batch_free(&b);
}

/* Three roots: {r0}, {r1, r2 sharing page 1}, {r3}. */
static void t_multi_root(void **state) {
    (void)state;
    int32_t kv[] = {3, 5, 6, 4}, ip[] = {0, 1, 3, 5, 6}, idx[] = {0, 1, 2, 1, 3, 4};
    fgt_batch b;
    make(&b, 4, kv, ip, idx, 5, 4);
    fgt_forest_expect want = {5, 3, 2, 3 + 4 + 1 + 2 + 4, 18};
    run_batch("multi-root", &b, 4, &want);
    fgt_batch_free(&b);
}

/* Same page ids at different positions, or a common later page under different first
 * pages, are not sharing: sharing needs identical ids at identical positions from 0. */
static void t_no_false_sharing(void **state) {
    (void)state;
    int32_t kv[] = {8, 8, 8}, ip[] = {0, 2, 4, 6}, idx[] = {0, 1, 1, 0, 2, 1};
    fgt_batch b;
    make(&b, 3, kv, ip, idx, 3, 4);
    fgt_forest_expect want = {3, 3, 1, 24, 24};
    run_batch("no false sharing", &b, 4, &want);
    fgt_batch_free(&b);
}

/* Page size 1: sharing at single-token granularity, a 3-level chain with a branch. */
static void t_page_size_one(void **state) {
    (void)state;
    int32_t kv[] = {3, 4, 4, 2}, ip[] = {0, 3, 7, 11, 13};
    int32_t idx[] = {7, 8, 9, 7, 8, 9, 10, 7, 8, 9, 11, 7, 8};
    fgt_batch b;
    make(&b, 4, kv, ip, idx, 12, 1);
    /* nodes: [0,2) r3 ends; [2,3) r0 ends; [3,4) r1; [3,4) r2 */
    fgt_forest_expect want = {4, 1, 3, 2 + 1 + 1 + 1, 13};
    run_batch("page size 1", &b, 1, &want);
    fgt_batch_free(&b);
}

/* 4096 requests: a 2-page prompt shared by all, 64 groups of 64 sharing one more page,
 * each request with its own partly filled page. */
static void t_thousands(void **state) {
    (void)state;
    const int32_t R = 4096, ps = 16;
    int32_t *kv = malloc(sizeof(int32_t) * R), *q = malloc(sizeof(int32_t) * R);
    int32_t *ip = malloc(sizeof(int32_t) * (R + 1)), *idx = malloc(sizeof(int32_t) * R * 4);
    assert_true(kv && q && ip && idx);
    int64_t uniq = 32 + 64 * 16, total = 0;
    ip[0] = 0;
    for (int32_t r = 0; r < R; r++) {
        int32_t own = r % 15 + 1;
        kv[r] = 48 + own;
        q[r] = 1 + r % 4;
        total += kv[r];
        uniq += own;
        int32_t *t = idx + ip[r];
        t[0] = 0;
        t[1] = 1;
        t[2] = 2 + r % 64;       /* group page */
        t[3] = 2 + 64 + r;       /* own page */
        ip[r + 1] = ip[r] + 4;
    }
    fgt_batch b;
    assert_int_equal(fgt_batch_from_arrays(R, q, kv, ip, idx, 2 + 64 + R, &b), 0);
    fgt_forest_expect want = {1 + 64 + R, 1, 3, uniq, total};
    run_batch("4096 requests", &b, ps, &want);
    fgt_batch_free(&b);
    free(kv);
    free(q);
    free(ip);
    free(idx);
}

/* ------------------------------------------------------------- random */

static void t_random(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 300; seed++) {
        fgt_rng rng;
        fgt_rng_seed(&rng, 0xf0e5700 + seed);
        fgt_forest_params p = {
            .num_roots = fgt_rng_range(&rng, 1, 3),
            .max_depth = fgt_rng_range(&rng, 1, 6),
            .max_fanout = fgt_rng_range(&rng, 1, 64),
            .min_node_len = 1,
            .max_node_len = fgt_rng_range(&rng, 1, 4096),
            .page_size = (int32_t[]){1, 2, 3, 16, 16, 32}[fgt_rng_range(&rng, 0, 5)],
            .max_q_len = 8,
            .max_requests = fgt_rng_range(&rng, 1, 200),
        };
        fgt_batch b;
        assert_int_equal(fgt_batch_random(&rng, &p, &b), 0);
        char label[64];
        snprintf(label, sizeof label, "random seed %llu", (unsigned long long)seed);
        run_batch(label, &b, p.page_size, NULL);
        fgt_batch_free(&b);
    }
}

/* ------------------------------------------------------------- explicit trees */

static void forest_stats(const fg_forest *f, fgt_forest_expect *e) {
    e->num_nodes = f->num_nodes;
    e->num_roots = f->num_roots;
    e->max_depth = f->max_depth;
    e->unique_tokens = f->unique_tokens;
    e->total_tokens = f->total_tokens;
}

/* Canonical random trees: the explicit tree and detection agree exactly, through the
 * internal builders and through plan stats. */
static void t_tree_matches_detection(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 150; seed++) {
        fgt_rng rng;
        fgt_rng_seed(&rng, 0x7ee0000 + seed);
        int32_t ps = (int32_t[]){1, 4, 16}[fgt_rng_range(&rng, 0, 2)];
        fgt_forest_params p = {
            .num_roots = fgt_rng_range(&rng, 1, 3),
            .max_depth = fgt_rng_range(&rng, 1, 6),
            .max_fanout = fgt_rng_range(&rng, 2, 16),
            .min_node_len = 1,
            .max_node_len = 300,
            .page_size = ps,
            .max_q_len = 4,
            .max_requests = fgt_rng_range(&rng, 1, 80),
            .with_tree = 1,
        };
        fgt_forest_opts o = {.canonical = 1};
        fgt_batch b;
        assert_int_equal(fgt_batch_random_ex(&rng, &p, &o, &b), 0);
        char label[64];
        snprintf(label, sizeof label, "tree seed %llu", (unsigned long long)seed);
        fg_forest ft, fd;
        fg_status st = fg_forest_from_tree(&b.desc, &ft);
        if (st != FG_SUCCESS) fail_msg("%s: fg_forest_from_tree: %s: %s", label, fg_status_string(st), fg_last_error());
        check_forest(label, &b, ps, &ft);
        assert_int_equal(fg_forest_from_block_tables(&b.desc, ps, 0, &fd), FG_SUCCESS);
        fgt_forest_expect et, ed;
        forest_stats(&ft, &et);
        forest_stats(&fd, &ed);
        assert_int_equal(ft.num_nodes, b.tree.num_nodes);
        check_counts(label, &fd, &et);
        fg_forest_free(&ft);
        fg_forest_free(&fd);
        /* Plan stats with the tree equal those detected. */
        check_stats(label, &b, ps, &ed);
        fg_attn_desc a = small_attn(ps);
        fg_plan plan;
        assert_int_equal(fg_plan_create(g_ctx, &a, &b.desc, &plan), FG_SUCCESS);
        fg_plan_stats s;
        assert_int_equal(fg_plan_stats_get(plan, &s), FG_SUCCESS);
        if (s.num_nodes != ed.num_nodes || s.max_depth != ed.max_depth || s.unique_kv_tokens != ed.unique_tokens)
            fail_msg("%s: plan stats with the explicit tree: nodes/depth/unique %d/%d/%lld, detection %d/%d/%lld",
                     label, s.num_nodes, s.max_depth, (long long)s.unique_kv_tokens, ed.num_nodes, ed.max_depth,
                     (long long)ed.unique_tokens);
        fg_plan_destroy(plan);
        fgt_batch_free(&b);
    }
}

/* A hand-made tree equals detection on the shared-partial-page batch. Nodes numbered
 * children first, to check the library does not assume parents come first. */
static void t_tree_handmade(void **state) {
    (void)state;
    int32_t kv[] = {6, 8, 5}, ip[] = {0, 2, 4, 6}, idx[] = {5, 1, 5, 1, 5, 2};
    fgt_batch b;
    make(&b, 3, kv, ip, idx, 8, 4);
    int32_t parent[] = {2, 3, -1, 2}, length[] = {1, 2, 4, 2}, rn[] = {3, 1, 0};
    fg_tree_desc tr = {4, parent, length, rn};
    b.desc.tree = &tr;
    fg_forest f;
    fg_status st = fg_forest_from_tree(&b.desc, &f);
    if (st != FG_SUCCESS) fail_msg("fg_forest_from_tree: %s: %s", fg_status_string(st), fg_last_error());
    check_forest("hand-made tree", &b, 4, &f);
    fgt_forest_expect want = {4, 1, 3, 9, 19};
    check_counts("hand-made tree", &f, &want);
    fg_forest_free(&f);
    fgt_batch_free(&b);
}

/* Each invalid tree: FG_ERR_INVALID_TREE from the builder and from fg_plan_create, with
 * a message holding `needle` (the field and index it names). */
static void expect_bad_tree(fgt_batch *b, const fg_tree_desc *tr, const char *needle) {
    b->desc.tree = tr;
    fg_forest f;
    memset(&f, 0, sizeof f);
    fg_status st = fg_forest_from_tree(&b->desc, &f);
    if (st != FG_ERR_INVALID_TREE)
        fail_msg("tree (%s): got %s, want FG_ERR_INVALID_TREE (%s)", needle, fg_status_string(st), fg_last_error());
    if (!strstr(fg_last_error(), needle))
        fail_msg("tree: message \"%s\" does not name \"%s\"", fg_last_error(), needle);
    fg_attn_desc a = small_attn(4);
    fg_plan plan = (fg_plan)(uintptr_t)0x5a5a;
    st = fg_plan_create(g_ctx, &a, &b->desc, &plan);
    if (st != FG_ERR_INVALID_TREE)
        fail_msg("plan with tree (%s): got %s (%s)", needle, fg_status_string(st), fg_last_error());
    if (!strstr(fg_last_error(), needle))
        fail_msg("plan: message \"%s\" does not name \"%s\"", fg_last_error(), needle);
    assert_true(plan == (fg_plan)(uintptr_t)0x5a5a); /* caller's handle untouched */
    b->desc.tree = NULL;
}

static void t_tree_invalid(void **state) {
    (void)state;
    int32_t kv[] = {6, 8, 5}, ip[] = {0, 2, 4, 6}, idx[] = {5, 1, 5, 1, 5, 2};
    fgt_batch b;
    make(&b, 3, kv, ip, idx, 8, 4);
    /* valid: 0 root(4), 1 <- 0 (2), 2 <- 1 (2), 3 <- 0 (1); requests at 1, 2, 3 */
    {
        int32_t parent[] = {1, 2, 0, 0}, length[] = {4, 2, 2, 1}, rn[] = {1, 2, 3};
        fg_tree_desc tr = {4, parent, length, rn}; /* cycle 0 -> 1 -> 2 -> 0 */
        expect_bad_tree(&b, &tr, "cycle");
    }
    {
        int32_t parent[] = {-1, 0, 1, 3}, length[] = {4, 2, 2, 1}, rn[] = {1, 2, 3};
        fg_tree_desc tr = {4, parent, length, rn}; /* node 3 its own parent */
        expect_bad_tree(&b, &tr, "parent[3]");
    }
    {
        int32_t parent[] = {-1, 0, 1, 4}, length[] = {4, 2, 2, 1}, rn[] = {1, 2, 3};
        fg_tree_desc tr = {4, parent, length, rn}; /* parent out of range */
        expect_bad_tree(&b, &tr, "parent[3]");
    }
    {
        int32_t parent[] = {-1, 0, -7, 0}, length[] = {4, 2, 2, 1}, rn[] = {1, 2, 3};
        fg_tree_desc tr = {4, parent, length, rn}; /* negative parent other than -1 */
        expect_bad_tree(&b, &tr, "parent[2]");
    }
    {
        int32_t parent[] = {-1, 0, 1, 0}, length[] = {4, 0, 2, 1}, rn[] = {1, 2, 3};
        fg_tree_desc tr = {4, parent, length, rn}; /* zero length */
        expect_bad_tree(&b, &tr, "length[1]");
    }
    {
        int32_t parent[] = {-1, 0, 1, 0}, length[] = {4, 2, 2, 2}, rn[] = {1, 2, 3};
        fg_tree_desc tr = {4, parent, length, rn}; /* request 2's path: 6 tokens, kv_len 5 */
        expect_bad_tree(&b, &tr, "request 2");
    }
    {
        int32_t parent[] = {-1, 0, 1, 0}, length[] = {4, 2, 2, 1}, rn[] = {1, 4, 3};
        fg_tree_desc tr = {4, parent, length, rn}; /* request_node out of range */
        expect_bad_tree(&b, &tr, "request_node[1]");
    }
    {
        int32_t parent[] = {-1, 0, 1, 0}, length[] = {4, 2, 2, 1}, rn[] = {1, -1, 3};
        fg_tree_desc tr = {4, parent, length, rn};
        expect_bad_tree(&b, &tr, "request_node[1]");
    }
    {
        int32_t parent[] = {-1}, length[] = {4}, rn[] = {0, 0, 0};
        fg_tree_desc tr = {0, parent, length, rn}; /* no nodes */
        expect_bad_tree(&b, &tr, "num_nodes");
    }
    fgt_batch_free(&b);
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
    const char *which = argc > 1 ? argv[1] : "handmade";
    const struct CMUnitTest handmade[] = {
        cmocka_unit_test(t_shared_partial_last_page), cmocka_unit_test(t_identical_partial),
        cmocka_unit_test(t_prefix_of_other),          cmocka_unit_test(t_single_request),
        cmocka_unit_test(t_multi_root),               cmocka_unit_test(t_no_false_sharing),
        cmocka_unit_test(t_page_size_one),            cmocka_unit_test(t_thousands),
    };
    const struct CMUnitTest random[] = {cmocka_unit_test(t_random)};
    const struct CMUnitTest tree[] = {
        cmocka_unit_test(t_tree_handmade),
        cmocka_unit_test(t_tree_matches_detection),
        cmocka_unit_test(t_tree_invalid),
    };
    if (!strcmp(which, "handmade")) return cmocka_run_group_tests_name("forest.handmade", handmade, setup, teardown);
    if (!strcmp(which, "random")) return cmocka_run_group_tests_name("forest.random", random, setup, teardown);
    if (!strcmp(which, "tree")) return cmocka_run_group_tests_name("forest.tree", tree, setup, teardown);
    fprintf(stderr, "usage: %s handmade|random|tree\n", argv[0]);
    return 2;
}
