/*
 * Tiny random prefix-forest batch generator for the cost tests (independent of
 * tests/support so these tests run before and without it). Pages follow what paged
 * engines do: a page is shared by two requests only when every token in it is, so a
 * partly filled page where a branch diverges is copied (copy-on-write).
 */
#ifndef FG_COST_TEST_GEN_H
#define FG_COST_TEST_GEN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forgeattn.h"

typedef struct gen_rng { uint64_t s; } gen_rng;

static inline uint64_t gen_u64(gen_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* uniform in [lo, hi] */
static inline int32_t gen_range(gen_rng *r, int32_t lo, int32_t hi) {
    return lo + (int32_t)(gen_u64(r) % (uint64_t)(hi - lo + 1));
}

typedef struct gen_shape {
    int32_t roots, depth, fanout, min_len, max_len, page_size, max_q, max_requests;
    int32_t requests_per_leaf; /* 1..: several identical requests per leaf */
    int32_t inner_request_pct; /* chance a non-leaf also ends a request */
} gen_shape;

typedef struct gen_batch {
    fg_batch_desc desc;
    int32_t *q_len, *kv_len, *indptr, *pages, *q_indptr;
    int32_t num_qtok, page_size;
} gen_batch;

static inline void gen_free(gen_batch *b) {
    free(b->q_len);
    free(b->kv_len);
    free(b->indptr);
    free(b->pages);
    free(b->q_indptr);
    memset(b, 0, sizeof *b);
}

/* Returns 0 on success. */
static inline int gen_batch_make(gen_rng *rng, const gen_shape *s, gen_batch *out) {
    memset(out, 0, sizeof *out);
    enum { MAXN = 4096 };
    int32_t *parent = malloc(sizeof(int32_t) * MAXN), *len = malloc(sizeof(int32_t) * MAXN);
    int32_t *endpos = malloc(sizeof(int32_t) * MAXN), *nchild = calloc(MAXN, sizeof(int32_t));
    int32_t *req_node = malloc(sizeof(int32_t) * MAXN);
    int32_t n = 0, R = 0;
    /* Breadth-first growth, capped by the node and request budgets. */
    int32_t *depth = malloc(sizeof(int32_t) * MAXN);
    for (int32_t i = 0; i < s->roots && n < MAXN; i++) {
        parent[n] = -1;
        depth[n] = 1;
        len[n] = gen_range(rng, s->min_len, s->max_len);
        endpos[n] = len[n];
        n++;
    }
    for (int32_t i = 0; i < n; i++) {
        if (depth[i] >= s->depth) continue;
        int32_t k = gen_range(rng, 0, s->fanout);
        if (depth[i] == 1 && k == 0) k = 1;
        for (int32_t c = 0; c < k && n < MAXN && n < 4 * s->max_requests; c++) {
            parent[n] = i;
            depth[n] = depth[i] + 1;
            len[n] = gen_range(rng, s->min_len, s->max_len);
            endpos[n] = endpos[i] + len[n];
            nchild[i]++;
            n++;
        }
    }
    for (int32_t i = 0; i < n && R < s->max_requests; i++) {
        int32_t k = 0;
        if (nchild[i] == 0) k = gen_range(rng, 1, s->requests_per_leaf);
        else if (gen_range(rng, 0, 99) < s->inner_request_pct) k = 1;
        for (int32_t j = 0; j < k && R < s->max_requests; j++) req_node[R++] = i;
    }
    if (R == 0) req_node[R++] = 0;
    /* Shuffle the request order so that sharers are not always adjacent. */
    for (int32_t i = R - 1; i > 0; i--) {
        int32_t j = gen_range(rng, 0, i), t = req_node[i];
        req_node[i] = req_node[j];
        req_node[j] = t;
    }
    int32_t ps = s->page_size;
    out->page_size = ps;
    out->q_len = malloc(sizeof(int32_t) * (size_t)R);
    out->kv_len = malloc(sizeof(int32_t) * (size_t)R);
    out->indptr = malloc(sizeof(int32_t) * (size_t)(R + 1));
    out->q_indptr = malloc(sizeof(int32_t) * (size_t)(R + 1));
    int64_t total_pages = 0;
    for (int32_t r = 0; r < R; r++) {
        out->kv_len[r] = endpos[req_node[r]];
        int32_t q = gen_range(rng, 1, s->max_q);
        out->q_len[r] = q < out->kv_len[r] ? q : out->kv_len[r];
        total_pages += (out->kv_len[r] + ps - 1) / ps;
    }
    out->pages = malloc(sizeof(int32_t) * (size_t)(total_pages > 0 ? total_pages : 1));
    /* Page id of (node holding the page's last token, page index): a dense numbering
     * per node, then a random permutation of all ids. */
    int32_t *base = malloc(sizeof(int32_t) * (size_t)n);
    int32_t ids = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t b = endpos[i] - len[i];
        base[i] = ids - b / ps;
        ids += (endpos[i] - 1) / ps - b / ps + 1;
    }
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)ids);
    for (int32_t i = 0; i < ids; i++) perm[i] = i;
    for (int32_t i = ids - 1; i > 0; i--) {
        int32_t j = gen_range(rng, 0, i), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int32_t at = 0, qt = 0;
    int32_t *path = malloc(sizeof(int32_t) * 64);
    for (int32_t r = 0; r < R; r++) {
        out->indptr[r] = at;
        out->q_indptr[r] = qt;
        qt += out->q_len[r];
        int32_t np = 0;
        for (int32_t v = req_node[r]; v >= 0; v = parent[v]) path[np++] = v;
        int32_t kv = out->kv_len[r], k = np - 1; /* path[k] = root */
        for (int32_t j = 0; j * ps < kv; j++) {
            int32_t last = (j + 1) * ps < kv ? (j + 1) * ps - 1 : kv - 1;
            while (endpos[path[k]] <= last) k--;
            out->pages[at++] = perm[base[path[k]] + j];
        }
    }
    out->indptr[R] = at;
    out->q_indptr[R] = qt;
    out->num_qtok = qt;
    fg_batch_desc d = {R, out->q_len, out->kv_len, out->indptr, out->pages, ids, NULL, 0};
    out->desc = d;
    free(path);
    free(perm);
    free(base);
    free(parent);
    free(len);
    free(endpos);
    free(nchild);
    free(req_node);
    free(depth);
    return 0;
}

#endif /* FG_COST_TEST_GEN_H */
