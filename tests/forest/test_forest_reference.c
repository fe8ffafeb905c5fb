/*
 * Property guarded: the prefix forest built from block tables is, field by field, the
 * forest its definition gives, computed here directly and slowly (O(R^2 x pages)):
 *  - requests rank in the order of their page ids (lexicographic; on a tie the shorter
 *    KV first, then the lower index);
 *  - two requests share exactly the tokens before the first page they differ on,
 *    clamped to both lengths (a shared, partly filled last page shares what both hold);
 *  - a request's path is cut wherever it parts from some other request; each piece is
 *    one node, owned (src_req, rank_lo) by the first request through it, numbered in
 *    order of (first request, begin): DFS preorder with children by first request;
 *  - rank ranges, parents, depths, end nodes and the totals follow from that;
 *  - FG_BATCH_NO_SHARING's forest is one root per request, in index order.
 * Batches are random forests with their requests shuffled (so the builder's sort has
 * work to do), plus copies of requests with shorter KV inside the same last page.
 * Run as: test_forest_reference
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

typedef struct ref_batch {
    int32_t R, ps;
    const int32_t *kv, *ip, *ix;
} ref_batch;

static const ref_batch *g_sort_batch;

/* Full comparison of requests a and b by the ranking rule above (for qsort). */
static int ref_cmp(const void *pa, const void *pb) {
    const ref_batch *b = g_sort_batch;
    int32_t x = *(const int32_t *)pa, y = *(const int32_t *)pb;
    int32_t nx = b->ip[x + 1] - b->ip[x], ny = b->ip[y + 1] - b->ip[y];
    for (int32_t k = 0; k < nx && k < ny; k++) {
        int32_t u = b->ix[b->ip[x] + k], v = b->ix[b->ip[y] + k];
        if (u != v) return u < v ? -1 : 1;
    }
    if (b->kv[x] != b->kv[y]) return b->kv[x] < b->kv[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Tokens requests a and b hold in the same slots. */
static int32_t shared_tokens(const ref_batch *b, int32_t x, int32_t y) {
    int32_t nx = b->ip[x + 1] - b->ip[x], ny = b->ip[y + 1] - b->ip[y], k = 0;
    while (k < nx && k < ny && b->ix[b->ip[x] + k] == b->ix[b->ip[y] + k]) k++;
    int64_t t = (int64_t)k * b->ps;
    if (t > b->kv[x]) t = b->kv[x];
    if (t > b->kv[y]) t = b->kv[y];
    return (int32_t)t;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The forest by definition, compared with f field by field. */
static void check_against_reference(const char *label, const ref_batch *b, const fg_forest *f) {
    const int32_t R = b->R;
    int32_t *order = malloc(sizeof(int32_t) * (size_t)R);
    int32_t *sh = malloc(sizeof(int32_t) * (size_t)R * (size_t)R); /* by sorted position */
    int32_t *cuts = malloc(sizeof(int32_t) * (size_t)(R + 2));
    /* nodes by (first position, begin): at most R cuts per request, 2R - 1 in all */
    int32_t *nf = malloc(sizeof(int32_t) * (size_t)(2 * R)), *nb = malloc(sizeof(int32_t) * (size_t)(2 * R));
    assert_true(order && sh && cuts && nf && nb);
    for (int32_t r = 0; r < R; r++) order[r] = r;
    g_sort_batch = b;
    qsort(order, (size_t)R, sizeof(int32_t), ref_cmp);
    for (int32_t i = 0; i < R; i++)
        for (int32_t j = 0; j < R; j++)
            sh[(size_t)i * R + j] = i == j ? b->kv[order[i]] : shared_tokens(b, order[i], order[j]);

    int32_t n = 0, roots = 0, maxd = 0;
    int64_t uniq = 0, total = 0;
    for (int32_t s = 0; s < R; s++) {
        const int32_t r = order[s], len = b->kv[r];
        assert_int_equal(f->req_at_rank[s], r);
        assert_int_equal(f->rank_of_req[r], s);
        total += len;
        /* s's cut points: 0, len and every length it shares with another request */
        int32_t nc = 0;
        cuts[nc++] = 0;
        cuts[nc++] = len;
        for (int32_t t = 0; t < R; t++) {
            int32_t v = sh[(size_t)s * R + t];
            if (t != s && v > 0 && v < len) cuts[nc++] = v;
        }
        qsort(cuts, (size_t)nc, sizeof(int32_t), cmp_i32);
        int32_t parent = -1, depth = 0, last = -1;
        for (int32_t k = 0; k + 1 < nc; k++) {
            const int32_t x = cuts[k], y = cuts[k + 1];
            if (x == y) continue;
            depth++;
            int32_t first = s, end = s; /* the requests through [x, y) */
            while (first > 0 && sh[(size_t)s * R + first - 1] >= y) first--;
            while (end + 1 < R && sh[(size_t)s * R + end + 1] >= y) end++;
            int32_t id = -1;
            if (first == s) { /* s opens this node: the next preorder number */
                id = n++;
                nf[id] = s;
                nb[id] = x;
                char what[160];
                snprintf(what, sizeof what, "%s: node %d of request %d [%d, %d)", label, id, r, x, y);
                if (f->parent[id] != parent || f->depth[id] != depth || f->begin[id] != x ||
                    f->length[id] != y - x || f->src_req[id] != r || f->rank_lo[id] != s ||
                    f->rank_hi[id] != end + 1)
                    fail_msg("%s: got parent %d depth %d begin %d length %d src %d ranks [%d, %d), want "
                             "%d %d %d %d %d [%d, %d)", what, f->parent[id], f->depth[id], f->begin[id],
                             f->length[id], f->src_req[id], f->rank_lo[id], f->rank_hi[id], parent, depth, x,
                             y - x, r, s, end + 1);
                if (parent < 0) roots++;
                uniq += y - x;
            } else {
                for (int32_t v = 0; v < n && id < 0; v++)
                    if (nf[v] == first && nb[v] == x) id = v;
                assert_true(id >= 0);
            }
            if (depth > maxd) maxd = depth;
            parent = id;
            last = id;
        }
        assert_int_equal(f->req_node[r], last);
    }
    assert_int_equal(f->num_nodes, n);
    assert_int_equal(f->num_requests, R);
    assert_int_equal(f->num_roots, roots);
    assert_int_equal(f->max_depth, maxd);
    assert_int_equal(f->unique_tokens, uniq);
    assert_int_equal(f->total_tokens, total);
    free(order);
    free(sh);
    free(cuts);
    free(nf);
    free(nb);
}

static void check_no_sharing(const fgt_batch *b, int32_t ps) {
    fg_forest f;
    assert_int_equal(fg_forest_from_block_tables(&b->desc, ps, 1, &f), FG_SUCCESS);
    const int32_t R = b->desc.num_requests;
    assert_int_equal(f.num_nodes, R);
    assert_int_equal(f.num_roots, R);
    assert_int_equal(f.max_depth, 1);
    for (int32_t r = 0; r < R; r++) {
        assert_int_equal(f.parent[r], -1);
        assert_int_equal(f.depth[r], 1);
        assert_int_equal(f.begin[r], 0);
        assert_int_equal(f.length[r], b->kv_len[r]);
        assert_int_equal(f.src_req[r], r);
        assert_int_equal(f.rank_lo[r], r);
        assert_int_equal(f.rank_hi[r], r + 1);
        assert_int_equal(f.req_at_rank[r], r);
        assert_int_equal(f.rank_of_req[r], r);
        assert_int_equal(f.req_node[r], r);
    }
    fg_forest_free(&f);
}

/* b's requests shuffled, some repeated with a shorter KV in the same last page. */
static void shuffled(fgt_rng *rng, const fgt_batch *b, int32_t ps, fgt_batch *out) {
    const int32_t R0 = b->desc.num_requests, extra = fgt_rng_range(rng, 0, R0 / 4 + 1);
    const int32_t R = R0 + extra;
    int32_t *src = malloc(sizeof(int32_t) * (size_t)R), *kv = malloc(sizeof(int32_t) * (size_t)R);
    int32_t *q = malloc(sizeof(int32_t) * (size_t)R), *ip = malloc(sizeof(int32_t) * (size_t)(R + 1));
    int32_t *ix = malloc(sizeof(int32_t) * (size_t)(b->page_indptr[R0] * 2 + 1));
    assert_true(src && kv && q && ip && ix);
    for (int32_t i = 0; i < R; i++) src[i] = i < R0 ? i : fgt_rng_range(rng, 0, R0 - 1);
    for (int32_t i = R - 1; i > 0; i--) {
        int32_t j = fgt_rng_range(rng, 0, i), t = src[i];
        src[i] = src[j];
        src[j] = t;
    }
    int32_t at = 0;
    for (int32_t i = 0; i < R; i++) {
        int32_t s = src[i], len = b->kv_len[s];
        if (i >= R0 || fgt_rng_range(rng, 0, 7) == 0) { /* cut inside its last page */
            int32_t lo = (len - 1) / ps * ps + 1;
            len = fgt_rng_range(rng, lo, len);
        }
        kv[i] = len;
        q[i] = 1;
        ip[i] = at;
        for (int32_t k = 0; k < (len + ps - 1) / ps; k++) ix[at++] = b->page_indices[b->page_indptr[s] + k];
    }
    ip[R] = at;
    assert_int_equal(fgt_batch_from_arrays(R, q, kv, ip, ix, b->desc.num_pages, out), 0);
    free(src);
    free(kv);
    free(q);
    free(ip);
    free(ix);
}

static void t_reference(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        fgt_rng rng;
        fgt_rng_seed(&rng, 0x5eed0000 + seed);
        fgt_forest_params p = {
            .num_roots = fgt_rng_range(&rng, 1, 3),
            .max_depth = fgt_rng_range(&rng, 1, 5),
            .max_fanout = fgt_rng_range(&rng, 1, 8),
            .min_node_len = 1,
            .max_node_len = fgt_rng_range(&rng, 1, 96),
            .page_size = (int32_t[]){1, 2, 3, 4, 16, 32}[fgt_rng_range(&rng, 0, 5)],
            .max_q_len = 1,
            .max_requests = fgt_rng_range(&rng, 1, 48),
        };
        fgt_batch b0, b;
        assert_int_equal(fgt_batch_random(&rng, &p, &b0), 0);
        shuffled(&rng, &b0, p.page_size, &b);
        char label[64];
        snprintf(label, sizeof label, "reference seed %llu", (unsigned long long)seed);
        ref_batch rb = {b.desc.num_requests, p.page_size, b.kv_len, b.page_indptr, b.page_indices};
        fg_forest f;
        assert_int_equal(fg_forest_from_block_tables(&b.desc, p.page_size, 0, &f), FG_SUCCESS);
        check_against_reference(label, &rb, &f);
        fg_forest_free(&f);
        check_no_sharing(&b, p.page_size);
        fgt_batch_free(&b0);
        fgt_batch_free(&b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_reference)};
    return cmocka_run_group_tests_name("forest.reference", tests, NULL, NULL);
}
