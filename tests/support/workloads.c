/*
 * DESIGN.md workloads W1..W5 as fgt_batch. Each is a small explicit tree (node lengths,
 * parents, requests per node) turned into block tables: every node gets fresh pages,
 * shared nodes end on a page boundary so children start on a fresh page, and each
 * request's table is the concatenation of its path's pages.
 */
#include "workloads.h"

#include <stdlib.h>
#include <string.h>

static const char *const k_names[FGT_NUM_WORKLOADS] = {"W1 n=16", "W1 n=32", "W2", "W3", "W4", "W5"};
static const char *const k_desc[FGT_NUM_WORKLOADS] = {
    "parallel sampling (Bifurcated): MHA 32/32, one 8192-token prompt, n=16 x 256 own tokens",
    "parallel sampling (Bifurcated): MHA 32/32, one 8192-token prompt, n=32 x 256 own tokens",
    "document QA: GQA 32/8, 8 documents x 4096 tokens each shared by 16 requests, 512 own",
    "three-level tree: GQA 32/8, 2048 shared by 64, 4 groups of 16 share 2048 more, 256 own",
    "no sharing: GQA 32/8, batch 64, own lengths 1024..8192",
    "few-shot, wide fan-out: GQA 32/8, one 1024-token prefix shared by 256 requests, 64 own"};

const char *fgt_workload_name(int id) { return id >= 0 && id < FGT_NUM_WORKLOADS ? k_names[id] : NULL; }
const char *fgt_workload_desc(int id) { return id >= 0 && id < FGT_NUM_WORKLOADS ? k_desc[id] : NULL; }

typedef struct wtree {
    int32_t n, cap;
    int32_t *parent, *len;
} wtree;

static int32_t wt_add(wtree *t, int32_t parent, int32_t len) {
    if (t->n == t->cap) {
        int32_t c = t->cap ? 2 * t->cap : 64;
        int32_t *p = realloc(t->parent, sizeof(int32_t) * (size_t)c);
        if (!p) return -1;
        t->parent = p;
        p = realloc(t->len, sizeof(int32_t) * (size_t)c);
        if (!p) return -1;
        t->len = p;
        t->cap = c;
    }
    t->parent[t->n] = parent;
    t->len[t->n] = len;
    return t->n++;
}

/* Shared prefix length after scaling: whole pages, at least one. */
static int32_t shared_len(int32_t len, int32_t scale, int32_t ps) {
    int32_t l = len / scale;
    l = (l + ps - 1) / ps * ps;
    return l < ps ? ps : l;
}

static int32_t own_len(int32_t len, int32_t scale) {
    int32_t l = len / scale;
    return l < 1 ? 1 : l;
}

static int32_t count(int32_t n, int32_t scale, int32_t lo) {
    int32_t c = n / scale;
    return c < lo ? lo : (c > n ? n : c);
}

/* Every node is a request's end only when it is a leaf (one request per leaf). */
static int build(const wtree *t, int32_t ps, fgt_batch *out) {
    memset(out, 0, sizeof *out);
    int32_t *first = malloc(sizeof(int32_t) * (size_t)t->n);  /* first page id of node */
    int32_t *begin = malloc(sizeof(int32_t) * (size_t)t->n);
    int32_t *isleaf = malloc(sizeof(int32_t) * (size_t)t->n);
    int rc = -1;
    if (!first || !begin || !isleaf) goto done;
    int32_t next = 0, nreq = 0;
    for (int32_t i = 0; i < t->n; i++) isleaf[i] = 1;
    for (int32_t i = 0; i < t->n; i++)
        if (t->parent[i] >= 0) isleaf[t->parent[i]] = 0;
    for (int32_t i = 0; i < t->n; i++) { /* parents precede children */
        begin[i] = t->parent[i] < 0 ? 0 : begin[t->parent[i]] + t->len[t->parent[i]];
        first[i] = next;
        next += (t->len[i] + ps - 1) / ps;
        nreq += isleaf[i];
    }
    out->q_len = calloc((size_t)nreq, sizeof(int32_t));
    out->kv_len = calloc((size_t)nreq, sizeof(int32_t));
    out->page_indptr = calloc((size_t)nreq + 1, sizeof(int32_t));
    if (!out->q_len || !out->kv_len || !out->page_indptr) goto done;
    int32_t r = 0;
    int64_t total = 0;
    for (int32_t i = 0; i < t->n; i++)
        if (isleaf[i]) {
            out->kv_len[r] = begin[i] + t->len[i];
            out->q_len[r] = 1;
            total += (out->kv_len[r] + ps - 1) / ps;
            out->page_indptr[++r] = (int32_t)total;
        }
    out->page_indices = calloc((size_t)total, sizeof(int32_t));
    if (!out->page_indices) goto done;
    r = 0;
    for (int32_t i = 0; i < t->n; i++)
        if (isleaf[i]) {
            int32_t *tbl = out->page_indices + out->page_indptr[r++];
            for (int32_t v = i; v >= 0; v = t->parent[v]) {
                int32_t np = (t->len[v] + ps - 1) / ps, idx0 = begin[v] / ps;
                for (int32_t j = 0; j < np; j++) tbl[idx0 + j] = first[v] + j;
            }
        }
    out->page_size = ps;
    out->desc.num_requests = nreq;
    out->desc.q_len = out->q_len;
    out->desc.kv_len = out->kv_len;
    out->desc.page_indptr = out->page_indptr;
    out->desc.page_indices = out->page_indices;
    out->desc.num_pages = next;
    out->num_q_tokens = nreq;
    rc = 0;
done:
    free(first);
    free(begin);
    free(isleaf);
    if (rc) fgt_batch_free(out);
    return rc;
}

int fgt_batch_workload(int id, int32_t scale, fg_attn_desc *attn, fgt_batch *out) {
    if (id < 0 || id >= FGT_NUM_WORKLOADS || !attn || !out) return -1;
    if (scale < 1) scale = 1;
    const int32_t ps = 16;
    memset(attn, 0, sizeof *attn);
    attn->num_q_heads = 32;
    attn->num_kv_heads = 8;
    attn->layout = FG_LAYOUT_GQA;
    attn->head_dim_qk = attn->head_dim_v = 128;
    attn->q_dtype = attn->kv_dtype = FG_DTYPE_FP16;
    attn->page_size = ps;
    wtree t = {0};
    int ok = 1;
    switch (id) {
    case FGT_W1_N16:
    case FGT_W1_N32: {
        attn->num_kv_heads = 32;
        attn->layout = FG_LAYOUT_MHA;
        int32_t n = id == FGT_W1_N16 ? 16 : 32;
        int32_t root = wt_add(&t, -1, shared_len(8192, scale, ps));
        for (int32_t i = 0; i < n; i++) ok &= wt_add(&t, root, own_len(256, scale)) >= 0;
        ok &= root >= 0;
        break;
    }
    case FGT_W2: {
        int32_t docs = count(8, scale, 2);
        for (int32_t d = 0; d < docs; d++) {
            int32_t doc = wt_add(&t, -1, shared_len(4096, scale, ps));
            ok &= doc >= 0;
            for (int32_t i = 0; i < 16 && ok; i++) ok &= wt_add(&t, doc, own_len(512, scale)) >= 0;
        }
        break;
    }
    case FGT_W3: {
        int32_t sys = wt_add(&t, -1, shared_len(2048, scale, ps));
        ok &= sys >= 0;
        for (int32_t g = 0; g < 4 && ok; g++) {
            int32_t grp = wt_add(&t, sys, shared_len(2048, scale, ps));
            ok &= grp >= 0;
            for (int32_t i = 0; i < 16 && ok; i++) ok &= wt_add(&t, grp, own_len(256, scale)) >= 0;
        }
        break;
    }
    case FGT_W4: {
        int32_t n = count(64, scale, 8);
        for (int32_t i = 0; i < n && ok; i++) {
            /* Spread evenly over 1024..8192, interleaved so long and short alternate. */
            int32_t k = (i * 37) % n;
            int32_t len = 1024 + (int32_t)((int64_t)(8192 - 1024) * k / (n > 1 ? n - 1 : 1));
            ok &= wt_add(&t, -1, own_len(len, scale)) >= 0;
        }
        break;
    }
    case FGT_W5: {
        int32_t n = count(256, scale, 16);
        int32_t root = wt_add(&t, -1, shared_len(1024, scale, ps));
        ok &= root >= 0;
        for (int32_t i = 0; i < n && ok; i++) ok &= wt_add(&t, root, own_len(64, scale)) >= 0;
        break;
    }
    }
    int rc = ok ? build(&t, ps, out) : -1;
    free(t.parent);
    free(t.len);
    return rc;
}
