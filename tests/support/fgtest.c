/*
 * Test support: deterministic RNG, random prefix-sharing batches whose sharing is
 * expressed the way engines express it (identical page ids in the CSR block tables,
 * copy-on-write pages where a branch starts inside a partly filled page), random
 * tensors, the double-precision reference and the comparison with stated tolerances.
 *
 * The reference deliberately shares nothing with the library but the public header
 * and src/half.h: it walks each request's block table position by position.
 */
#include "fgtest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"

/* ------------------------------------------------------------------ rng */

/* splitmix64: tiny, good enough for test data, and every stream replays from its seed. */
void fgt_rng_seed(fgt_rng *r, uint64_t seed) { r->s = seed ^ 0x9e3779b97f4a7c15ull; }

uint64_t fgt_rng_u64(fgt_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int32_t fgt_rng_range(fgt_rng *r, int32_t lo, int32_t hi) {
    if (hi <= lo) return lo;
    uint64_t span = (uint64_t)((int64_t)hi - lo + 1);
    return (int32_t)(lo + (int64_t)(fgt_rng_u64(r) % span));
}

double fgt_rng_uniform(fgt_rng *r) { return (double)(fgt_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

/* --------------------------------------------------------------- batches */

static void *xcalloc(size_t n, size_t sz) {
    if (n == 0) n = 1; /* never ask for 0 bytes: a NULL would read as failure */
    return calloc(n, sz);
}

void fgt_batch_free(fgt_batch *b) {
    if (!b) return;
    free(b->q_len);
    free(b->kv_len);
    free(b->page_indptr);
    free(b->page_indices);
    free(b->tree_parent);
    free(b->tree_length);
    free(b->tree_request_node);
    free(b->alias_dst);
    free(b->alias_src);
    free(b->alias_slots);
    memset(b, 0, sizeof *b);
}

static void batch_link(fgt_batch *b, int32_t n, int32_t num_pages) {
    b->desc.num_requests = n;
    b->desc.q_len = b->q_len;
    b->desc.kv_len = b->kv_len;
    b->desc.page_indptr = b->page_indptr;
    b->desc.page_indices = b->page_indices;
    b->desc.num_pages = num_pages;
    b->desc.tree = b->has_tree ? &b->tree : NULL;
    b->desc.flags = 0;
    int64_t nq = 0;
    for (int32_t r = 0; r < n; r++) nq += b->q_len[r];
    b->num_q_tokens = (int32_t)nq;
}

int fgt_batch_from_arrays(int32_t n, const int32_t *q_len, const int32_t *kv_len,
                          const int32_t *indptr, const int32_t *indices, int32_t num_pages,
                          fgt_batch *out) {
    memset(out, 0, sizeof *out);
    if (n < 1) return -1;
    int32_t np = indptr[n];
    out->q_len = xcalloc((size_t)n, sizeof(int32_t));
    out->kv_len = xcalloc((size_t)n, sizeof(int32_t));
    out->page_indptr = xcalloc((size_t)n + 1, sizeof(int32_t));
    out->page_indices = xcalloc((size_t)(np > 0 ? np : 1), sizeof(int32_t));
    if (!out->q_len || !out->kv_len || !out->page_indptr || !out->page_indices) {
        fgt_batch_free(out);
        return -1;
    }
    memcpy(out->q_len, q_len, sizeof(int32_t) * (size_t)n);
    memcpy(out->kv_len, kv_len, sizeof(int32_t) * (size_t)n);
    memcpy(out->page_indptr, indptr, sizeof(int32_t) * ((size_t)n + 1));
    if (np > 0) memcpy(out->page_indices, indices, sizeof(int32_t) * (size_t)np);
    batch_link(out, n, num_pages);
    return 0;
}

/* Generator node: a run of KV positions [begin, begin + len) of every request under it.
 * pages[] holds the page ids (pre-shuffle numbering) for table indices
 * first_idx .. first_idx + npages - 1; a child that starts inside the parent's partly
 * filled page either continues it in place (same id: at most one child may) or gets a
 * copy-on-write page (new id, aliased to the parent's page for the parent's slots). */
typedef struct gnode {
    int32_t parent, depth, begin, len;
    int32_t first_idx, npages;
    int32_t *pages;
    int32_t nchild;
    int32_t inplace_taken;
    int32_t nreq; /* requests ending exactly here */
} gnode;

typedef struct gen {
    gnode *n;
    int32_t count, cap;
    int32_t next_page;
    int32_t *al_dst, *al_src, *al_slots;
    int32_t nal, alcap;
} gen;

static int gen_push(gen *g, gnode nd) {
    if (g->count == g->cap) {
        int32_t c = g->cap ? g->cap * 2 : 64;
        gnode *p = realloc(g->n, sizeof(gnode) * (size_t)c);
        if (!p) return -1;
        g->n = p;
        g->cap = c;
    }
    g->n[g->count++] = nd;
    return 0;
}

static int gen_alias(gen *g, int32_t dst, int32_t src, int32_t slots) {
    if (g->nal == g->alcap) {
        int32_t c = g->alcap ? g->alcap * 2 : 32;
        int32_t *a = realloc(g->al_dst, sizeof(int32_t) * (size_t)c);
        if (!a) return -1;
        g->al_dst = a;
        a = realloc(g->al_src, sizeof(int32_t) * (size_t)c);
        if (!a) return -1;
        g->al_src = a;
        a = realloc(g->al_slots, sizeof(int32_t) * (size_t)c);
        if (!a) return -1;
        g->al_slots = a;
        g->alcap = c;
    }
    g->al_dst[g->nal] = dst;
    g->al_src[g->nal] = src;
    g->al_slots[g->nal] = slots;
    g->nal++;
    return 0;
}

static void gen_free(gen *g) {
    for (int32_t i = 0; i < g->count; i++) free(g->n[i].pages);
    free(g->n);
    free(g->al_dst);
    free(g->al_src);
    free(g->al_slots);
    memset(g, 0, sizeof *g);
}

/* Lengths spread over orders of magnitude (log-uniform), so that both one-token nodes
 * and multi-page nodes are common; usually not a multiple of the page size. */
static int32_t draw_len(fgt_rng *rng, int32_t lo, int32_t hi, int32_t ps) {
    if (lo < 1) lo = 1;
    if (hi < lo) hi = lo;
    double u = fgt_rng_uniform(rng);
    int32_t len = (int32_t)floor(exp(log((double)lo) + u * (log((double)hi + 1.0) - log((double)lo))));
    if (len < lo) len = lo;
    if (len > hi) len = hi;
    if (ps > 1 && len % ps == 0 && fgt_rng_range(rng, 0, 3) != 0) len = len > lo ? len - 1 : len + 1;
    if (len > hi) len = hi;
    return len;
}

/* Give node i its pages (parent's pages must exist). */
static int gen_pages(gen *g, fgt_rng *rng, int32_t i, int32_t ps) {
    gnode *nd = &g->n[i];
    int32_t first = nd->begin / ps, last = (nd->begin + nd->len - 1) / ps;
    nd->first_idx = first;
    nd->npages = last - first + 1;
    nd->pages = malloc(sizeof(int32_t) * (size_t)nd->npages);
    if (!nd->pages) return -1;
    int32_t k = 0;
    if (nd->begin % ps != 0) {
        /* Starts inside the parent's partly filled last page. */
        gnode *par = &g->n[nd->parent];
        int32_t ppage = par->pages[par->npages - 1];
        if (!par->inplace_taken && fgt_rng_range(rng, 0, 1) == 0) {
            par->inplace_taken = 1; /* the page's owner appends in place */
            nd->pages[k++] = ppage;
        } else {
            int32_t cp = g->next_page++; /* copy-on-write: same contents for the parent's slots */
            if (gen_alias(g, cp, ppage, nd->begin % ps)) return -1;
            nd->pages[k++] = cp;
        }
    }
    for (; k < nd->npages; k++) nd->pages[k] = g->next_page++;
    return 0;
}

static int64_t batch_work(const fgt_batch *b) {
    int64_t w = 0;
    for (int32_t r = 0; r < b->desc.num_requests; r++) w += (int64_t)b->q_len[r] * b->kv_len[r];
    return w;
}

static int batch_random_once(fgt_rng *rng, const fgt_forest_params *p, const fgt_forest_opts *o,
                             fgt_batch *out) {
    memset(out, 0, sizeof *out);
    const int32_t ps = p->page_size > 0 ? p->page_size : 16;
    const int32_t maxd = p->max_depth < 1 ? 1 : (p->max_depth > 6 ? 6 : p->max_depth);
    const int32_t maxf = p->max_fanout < 1 ? 1 : p->max_fanout;
    int32_t maxreq = p->max_requests > 0 ? p->max_requests : 64;
    int32_t roots = p->num_roots < 1 ? 1 : p->num_roots;
    if (roots > maxreq) roots = maxreq;
    const int canon = o && o->canonical;
    gen g;
    memset(&g, 0, sizeof g);
    int rc = -1;

    /* 1. The tree shape, breadth first, never more leaves than requests allowed. */
    int32_t leaves = 0;
    for (int32_t i = 0; i < roots; i++) {
        gnode nd = {.parent = -1, .depth = 1};
        if (gen_push(&g, nd)) goto done;
        leaves++;
    }
    /* Per-batch branching probability: bushy shallow trees and deep narrow chains. */
    const int32_t p_expand = o && o->expand_pct > 0 ? o->expand_pct : fgt_rng_range(rng, 40, 95);
    for (int32_t i = 0; i < g.count; i++) {
        if (g.n[i].depth >= maxd) continue;
        if (fgt_rng_range(rng, 0, 99) >= p_expand) continue; /* stays a leaf */
        int32_t room = maxreq - leaves + 1;            /* children this node may have */
        if (room < 1) continue;
        int32_t hi = maxf < room ? maxf : room;
        /* Fan-out skewed low but sometimes the maximum (wide few-shot trees). */
        int32_t k = fgt_rng_range(rng, 0, 3) == 0 ? hi : fgt_rng_range(rng, 1, hi < 4 ? hi : 4);
        if (canon && k < 2) {
            if (hi < 2) continue;
            k = 2;
        }
        for (int32_t c = 0; c < k; c++) {
            gnode nd = {.parent = i, .depth = g.n[i].depth + 1};
            if (gen_push(&g, nd)) goto done;
        }
        g.n[i].nchild = k;
        leaves += k - 1;
    }

    /* 2. Lengths and positions (parents come before children in g.n). */
    for (int32_t i = 0; i < g.count; i++) {
        gnode *nd = &g.n[i];
        nd->begin = nd->parent < 0 ? 0 : g.n[nd->parent].begin + g.n[nd->parent].len;
        nd->len = draw_len(rng, p->min_node_len, p->max_node_len, ps);
        int align = nd->nchild > 0 && (canon || fgt_rng_range(rng, 0, 9) < 3);
        if (align) { /* interior node ending on a page boundary */
            int32_t end = nd->begin + nd->len;
            end = (end + ps - 1) / ps * ps;
            nd->len = end - nd->begin;
        }
    }
    /* 3. Requests: one per leaf, the rest at random nodes (internal: a request whose KV
     *    is a prefix of another's; leaf: duplicate identical requests). */
    int32_t nreq = leaves;
    int32_t extra = maxreq - leaves;
    if (extra > 0) extra = fgt_rng_range(rng, 0, extra < 8 ? extra : (extra / 2 > 8 ? extra / 2 : 8));
    if (extra < 0) extra = 0;
    nreq += extra;
    int32_t *req_node = malloc(sizeof(int32_t) * (size_t)nreq);
    if (!req_node) goto done;
    int32_t nr = 0;
    for (int32_t i = 0; i < g.count; i++)
        if (g.n[i].nchild == 0) {
            req_node[nr++] = i;
            g.n[i].nreq++;
        }
    for (; nr < nreq; nr++) {
        int32_t i = fgt_rng_range(rng, 0, g.count - 1);
        req_node[nr] = i;
        g.n[i].nreq++;
    }
    /* Shuffle the request order so requests of one node are not adjacent. */
    for (int32_t i = nreq - 1; i > 0; i--) {
        int32_t j = fgt_rng_range(rng, 0, i);
        int32_t t = req_node[i];
        req_node[i] = req_node[j];
        req_node[j] = t;
    }

    /* 4. Pages, parents first (children's in-place / copy-on-write choice needs them). */
    for (int32_t i = 0; i < g.count; i++)
        if (gen_pages(&g, rng, i, ps)) goto done_req;

    /* 5. Block tables: deeper path nodes overwrite the table entry of a shared index
     *    (in place: the same id; copy-on-write: the copy). */
    out->q_len = xcalloc((size_t)nreq, sizeof(int32_t));
    out->kv_len = xcalloc((size_t)nreq, sizeof(int32_t));
    out->page_indptr = xcalloc((size_t)nreq + 1, sizeof(int32_t));
    if (!out->q_len || !out->kv_len || !out->page_indptr) goto done_req;
    int64_t total_pages = 0;
    for (int32_t r = 0; r < nreq; r++) {
        gnode *nd = &g.n[req_node[r]];
        int32_t kv = nd->begin + nd->len;
        out->kv_len[r] = kv;
        total_pages += (kv + ps - 1) / ps;
        out->page_indptr[r + 1] = (int32_t)total_pages;
        int32_t qmax = p->max_q_len < 1 ? 1 : p->max_q_len;
        if (qmax > kv) qmax = kv;
        out->q_len[r] = fgt_rng_range(rng, 1, qmax);
    }
    out->page_indices = xcalloc((size_t)total_pages, sizeof(int32_t));
    if (!out->page_indices) goto done_req;
    int32_t path[8];
    for (int32_t r = 0; r < nreq; r++) {
        int32_t d = 0;
        for (int32_t i = req_node[r]; i >= 0; i = g.n[i].parent) path[d++] = i;
        int32_t *tbl = out->page_indices + out->page_indptr[r];
        for (int32_t k = d - 1; k >= 0; k--) {
            gnode *nd = &g.n[path[k]];
            for (int32_t j = 0; j < nd->npages; j++) tbl[nd->first_idx + j] = nd->pages[j];
        }
    }

    /* 6. Shuffle page ids over a cache with some unused pages. */
    int32_t used = g.next_page;
    int32_t num_pages = used + fgt_rng_range(rng, 0, used / 4 + 1);
    if (num_pages < 1) goto done_req;
    int32_t *perm = xcalloc((size_t)num_pages, sizeof(int32_t));
    if (!perm) goto done_req;
    for (int32_t i = 0; i < num_pages; i++) perm[i] = i;
    for (int32_t i = num_pages - 1; i > 0; i--) {
        int32_t j = fgt_rng_range(rng, 0, i);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < total_pages; i++) out->page_indices[i] = perm[out->page_indices[i]];
    out->page_size = ps;
    out->num_alias = g.nal;
    out->alias_dst = xcalloc((size_t)g.nal, sizeof(int32_t));
    out->alias_src = xcalloc((size_t)g.nal, sizeof(int32_t));
    out->alias_slots = xcalloc((size_t)g.nal, sizeof(int32_t));
    if (!out->alias_dst || !out->alias_src || !out->alias_slots) {
        free(perm);
        goto done_req;
    }
    for (int32_t i = 0; i < g.nal; i++) {
        out->alias_dst[i] = perm[g.al_dst[i]];
        out->alias_src[i] = perm[g.al_src[i]];
        out->alias_slots[i] = g.al_slots[i];
    }
    free(perm);

    /* 7. The explicit tree of the same forest, nodes numbered in a random order (the
     *    library must not rely on parents preceding children). */
    if (p->with_tree) {
        int32_t nn = g.count;
        int32_t *order = malloc(sizeof(int32_t) * (size_t)nn); /* gen index -> tree index */
        out->tree_parent = xcalloc((size_t)nn, sizeof(int32_t));
        out->tree_length = xcalloc((size_t)nn, sizeof(int32_t));
        out->tree_request_node = xcalloc((size_t)nreq, sizeof(int32_t));
        if (!order || !out->tree_parent || !out->tree_length || !out->tree_request_node) {
            free(order);
            goto done_req;
        }
        for (int32_t i = 0; i < nn; i++) order[i] = i;
        for (int32_t i = nn - 1; i > 0; i--) {
            int32_t j = fgt_rng_range(rng, 0, i);
            int32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int32_t i = 0; i < nn; i++) {
            out->tree_parent[order[i]] = g.n[i].parent < 0 ? -1 : order[g.n[i].parent];
            out->tree_length[order[i]] = g.n[i].len;
        }
        for (int32_t r = 0; r < nreq; r++) out->tree_request_node[r] = order[req_node[r]];
        free(order);
        out->tree.num_nodes = nn;
        out->tree.parent = out->tree_parent;
        out->tree.length = out->tree_length;
        out->tree.request_node = out->tree_request_node;
        out->has_tree = 1;
    }
    batch_link(out, nreq, num_pages);
    rc = 0;
done_req:
    free(req_node);
done:
    gen_free(&g);
    if (rc) fgt_batch_free(out);
    return rc;
}

int fgt_batch_random_ex(fgt_rng *rng, const fgt_forest_params *p, const fgt_forest_opts *o,
                        fgt_batch *out) {
    /* Redraw (deterministically: same rng stream) until the batch fits the work cap. */
    fgt_forest_params q = *p;
    for (int attempt = 1; attempt <= 400; attempt++) {
        if (batch_random_once(rng, &q, o, out)) return -1;
        if (!o || o->max_work <= 0 || batch_work(out) <= o->max_work) return 0;
        fgt_batch_free(out);
        if (attempt % 25 == 0) { /* too big too often: shrink the shape a little */
            if (q.max_node_len > q.min_node_len && q.max_node_len > 1) q.max_node_len /= 2;
            if (q.max_requests > 1) q.max_requests = (q.max_requests + 1) / 2;
        }
    }
    return -1;
}

int fgt_batch_random(fgt_rng *rng, const fgt_forest_params *p, fgt_batch *out) {
    return fgt_batch_random_ex(rng, p, NULL, out);
}

/* --------------------------------------------------------------- tensors */

int32_t fgt_kv_head_count(const fg_attn_desc *a) {
    return a->kv_head_count > 0 ? a->kv_head_count : a->num_kv_heads - a->kv_head_begin;
}

/* Poison patterns: NaNs with a recognisable payload, so "untouched" is checkable. */
#define POISON_F32 0x7fc0deadu
#define POISON_H16 ((uint16_t)0x7dea) /* fp16 NaN */
#define POISON_B16 ((uint16_t)0x7fda) /* bf16 NaN */
#define POISON_LSE 0x7fc0beefu

static void store(void *base, fg_dtype t, int64_t i, float v) {
    if (t == FG_DTYPE_FP32) ((float *)base)[i] = v;
    else if (t == FG_DTYPE_FP16) ((uint16_t *)base)[i] = fg_float_to_half(v);
    else ((uint16_t *)base)[i] = fg_float_to_bf16(v);
}

static double load(const void *base, fg_dtype t, int64_t i) {
    if (t == FG_DTYPE_FP32) return ((const float *)base)[i];
    if (t == FG_DTYPE_FP16) return fg_half_to_float(((const uint16_t *)base)[i]);
    return fg_bf16_to_float(((const uint16_t *)base)[i]);
}

static void poison(void *base, fg_dtype t, size_t n) {
    if (t == FG_DTYPE_FP32) {
        uint32_t *p = base;
        for (size_t i = 0; i < n; i++) p[i] = POISON_F32;
    } else {
        uint16_t *p = base, v = t == FG_DTYPE_FP16 ? POISON_H16 : POISON_B16;
        for (size_t i = 0; i < n; i++) p[i] = v;
    }
}

static int is_poison(const void *base, fg_dtype t, int64_t i) {
    if (t == FG_DTYPE_FP32) return ((const uint32_t *)base)[i] == POISON_F32;
    return ((const uint16_t *)base)[i] == (t == FG_DTYPE_FP16 ? POISON_H16 : POISON_B16);
}

/* Uniform in [-1, 1], but never exactly 0 so a buffer is never all zero. */
static float rnd_val(fgt_rng *rng) {
    float v = (float)(2.0 * fgt_rng_uniform(rng) - 1.0);
    return v == 0.0f ? 0.5f : v;
}

static void fill_random(fgt_rng *rng, void *base, fg_dtype t, size_t n) {
    for (size_t i = 0; i < n; i++) store(base, t, (int64_t)i, rnd_val(rng));
}

/* Copy-on-write pages: the copied slots must hold exactly the source's K and V. */
static void apply_aliases(const fg_attn_desc *a, const fgt_batch *b, fgt_tensors *t) {
    int es = a->kv_dtype == FG_DTYPE_FP32 ? 4 : 2;
    for (int32_t i = 0; i < b->num_alias; i++) {
        for (int32_t s = 0; s < b->alias_slots[i]; s++)
            for (int32_t h = 0; h < a->num_kv_heads; h++) {
                int64_t kd = b->alias_dst[i] * t->t.k_stride_page + s * t->t.k_stride_token + h * t->t.k_stride_head;
                int64_t ks = b->alias_src[i] * t->t.k_stride_page + s * t->t.k_stride_token + h * t->t.k_stride_head;
                memcpy((char *)t->k + kd * es, (char *)t->k + ks * es, (size_t)a->head_dim_qk * (size_t)es);
                int64_t vd = b->alias_dst[i] * t->t.v_stride_page + s * t->t.v_stride_token + h * t->t.v_stride_head;
                int64_t vs = b->alias_src[i] * t->t.v_stride_page + s * t->t.v_stride_token + h * t->t.v_stride_head;
                memcpy((char *)t->v + vd * es, (char *)t->v + vs * es, (size_t)a->head_dim_v * (size_t)es);
            }
    }
}

void fgt_tensors_poison_output(const fg_attn_desc *a, fgt_tensors *t) {
    poison(t->o, a->q_dtype, t->o_elems);
    if (t->lse) {
        uint32_t *p = (uint32_t *)t->lse;
        for (size_t i = 0; i < t->lse_elems; i++) p[i] = POISON_LSE;
    }
}

void fgt_tensors_refill(fgt_rng *rng, const fg_attn_desc *a, const fgt_batch *b, fgt_tensors *t) {
    fill_random(rng, t->q, a->q_dtype, t->q_elems);
    fill_random(rng, t->k, a->kv_dtype, t->k_elems);
    fill_random(rng, t->v, a->kv_dtype, t->v_elems);
    apply_aliases(a, b, t);
    fgt_tensors_poison_output(a, t);
}

void fgt_tensors_free(fgt_tensors *t) {
    if (!t) return;
    free(t->q);
    free(t->k);
    free(t->v);
    free(t->o);
    free(t->lse);
    memset(t, 0, sizeof *t);
}

int fgt_tensors_random_ex(fgt_rng *rng, const fg_attn_desc *a, const fgt_batch *b,
                          const fgt_tensor_opts *o, fgt_tensors *out) {
    memset(out, 0, sizeof *out);
    int64_t pad = o ? o->pad : 0;
    int hnd = o && o->hnd;
    if (b->page_size && b->page_size != a->page_size) return -1; /* aliases would be wrong */
    int64_t nq = b->num_q_tokens, hq = a->num_q_heads, hk = a->num_kv_heads;
    int64_t dqk = a->head_dim_qk, dv = a->head_dim_v, ps = a->page_size, np = b->desc.num_pages;
    fg_tensors *t = &out->t;
    t->q_stride_head = dqk + pad;
    t->q_stride_token = hq * t->q_stride_head + pad;
    t->o_stride_head = dv + pad;
    t->o_stride_token = hq * t->o_stride_head + pad;
    t->lse_stride_head = 1 + pad;
    t->lse_stride_token = hq * t->lse_stride_head + pad;
    if (hnd) { /* [page][head][slot][dim] */
        t->k_stride_token = dqk + pad;
        t->k_stride_head = ps * t->k_stride_token + pad;
        t->k_stride_page = hk * t->k_stride_head + pad;
        t->v_stride_token = dv + pad;
        t->v_stride_head = ps * t->v_stride_token + pad;
        t->v_stride_page = hk * t->v_stride_head + pad;
    } else { /* [page][slot][head][dim] */
        t->k_stride_head = dqk + pad;
        t->k_stride_token = hk * t->k_stride_head + pad;
        t->k_stride_page = ps * t->k_stride_token + pad;
        t->v_stride_head = dv + pad;
        t->v_stride_token = hk * t->v_stride_head + pad;
        t->v_stride_page = ps * t->v_stride_token + pad;
    }
    out->q_elems = (size_t)(nq * t->q_stride_token);
    out->o_elems = (size_t)(nq * t->o_stride_token);
    out->k_elems = (size_t)(np * t->k_stride_page);
    out->v_elems = (size_t)(np * t->v_stride_page);
    out->lse_elems = (size_t)(nq * t->lse_stride_token);
    size_t qs = a->q_dtype == FG_DTYPE_FP32 ? 4 : 2, ks = a->kv_dtype == FG_DTYPE_FP32 ? 4 : 2;
    out->q = xcalloc(out->q_elems, qs);
    out->o = xcalloc(out->o_elems, qs);
    out->k = xcalloc(out->k_elems, ks);
    out->v = xcalloc(out->v_elems, ks);
    if (!(o && o->no_lse)) out->lse = xcalloc(out->lse_elems, sizeof(float));
    if (!out->q || !out->o || !out->k || !out->v || (!(o && o->no_lse) && !out->lse)) {
        fgt_tensors_free(out);
        return -1;
    }
    t->q = out->q;
    t->k_cache = out->k;
    t->v_cache = out->v;
    t->o = out->o;
    t->lse = out->lse;
    t->scale_override = 0.0f;
    fgt_tensors_refill(rng, a, b, out);
    return 0;
}

int fgt_tensors_random(fgt_rng *rng, const fg_attn_desc *a, const fgt_batch *b, int pad,
                       fgt_tensors *out) {
    fgt_tensor_opts o = {.pad = pad};
    return fgt_tensors_random_ex(rng, a, b, &o, out);
}

/* ------------------------------------------------------------- reference */

static double ref_scale(const fg_attn_desc *a, const fgt_tensors *t) {
    if (t->t.scale_override != 0.0f) return t->t.scale_override;
    if (a->scale != 0.0f) return a->scale;
    return 1.0 / sqrt((double)a->head_dim_qk);
}

static int32_t q_begin_of(const fgt_batch *b, int32_t r) {
    int32_t s = 0;
    for (int32_t i = 0; i < r; i++) s += b->q_len[i];
    return s;
}

/* One request, all covered heads. Gathers the request's K and V of one KV head into
 * dense double arrays through its block table, then attends every (q token, q head). */
static int ref_request(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t, int32_t r,
                       int32_t q0, double *o_ref, double *lse_ref) {
    const int32_t hq = a->num_q_heads, group = a->num_q_heads / a->num_kv_heads;
    const int32_t dqk = a->head_dim_qk, dv = a->head_dim_v, ps = a->page_size;
    const int32_t kv = b->kv_len[r], ql = b->q_len[r];
    const int32_t h0 = a->kv_head_begin, hc = fgt_kv_head_count(a);
    const double scale = ref_scale(a, t);
    const int32_t *tbl = b->page_indices + b->page_indptr[r];
    double *kd = malloc(sizeof(double) * (size_t)kv * (size_t)dqk);
    double *vd = malloc(sizeof(double) * (size_t)kv * (size_t)dv);
    double *s = malloc(sizeof(double) * (size_t)kv);
    double *q = malloc(sizeof(double) * (size_t)dqk);
    if (!kd || !vd || !s || !q) {
        free(kd);
        free(vd);
        free(s);
        free(q);
        return -1;
    }
    for (int32_t g = h0; g < h0 + hc; g++) {
        for (int32_t p = 0; p < kv; p++) {
            int64_t page = tbl[p / ps], slot = p % ps;
            int64_t kb = page * t->t.k_stride_page + slot * t->t.k_stride_token + g * t->t.k_stride_head;
            int64_t vb = page * t->t.v_stride_page + slot * t->t.v_stride_token + g * t->t.v_stride_head;
            for (int32_t d = 0; d < dqk; d++) kd[(int64_t)p * dqk + d] = load(t->k, a->kv_dtype, kb + d);
            for (int32_t d = 0; d < dv; d++) vd[(int64_t)p * dv + d] = load(t->v, a->kv_dtype, vb + d);
        }
        for (int32_t i = 0; i < ql; i++) {
            int32_t qt = q0 + i;
            int32_t limit = kv - ql + i + 1; /* causal among the request's new tokens */
            for (int32_t h = g * group; h < (g + 1) * group; h++) {
                int64_t qb = qt * t->t.q_stride_token + h * t->t.q_stride_head;
                for (int32_t d = 0; d < dqk; d++) q[d] = load(t->q, a->q_dtype, qb + d);
                double m = -INFINITY;
                for (int32_t p = 0; p < limit; p++) {
                    const double *kr = kd + (int64_t)p * dqk;
                    double acc = 0.0;
                    for (int32_t d = 0; d < dqk; d++) acc += q[d] * kr[d];
                    s[p] = acc * scale;
                    if (s[p] > m) m = s[p];
                }
                double sum = 0.0;
                double *orow = o_ref + ((int64_t)qt * hq + h) * dv;
                for (int32_t d = 0; d < dv; d++) orow[d] = 0.0;
                for (int32_t p = 0; p < limit; p++) {
                    double e = exp(s[p] - m);
                    sum += e;
                    const double *vr = vd + (int64_t)p * dv;
                    for (int32_t d = 0; d < dv; d++) orow[d] += e * vr[d];
                }
                for (int32_t d = 0; d < dv; d++) orow[d] /= sum;
                if (lse_ref) lse_ref[(int64_t)qt * hq + h] = m + log(sum);
            }
        }
    }
    free(kd);
    free(vd);
    free(s);
    free(q);
    return 0;
}

int fgt_reference_request(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                          int32_t r, double *o_ref, double *lse_ref) {
    return ref_request(a, b, t, r, q_begin_of(b, r), o_ref, lse_ref);
}

int fgt_reference(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                  double *o_ref, double *lse_ref) {
    int64_t n = (int64_t)b->num_q_tokens * a->num_q_heads;
    for (int64_t i = 0; i < n * a->head_dim_v; i++) o_ref[i] = NAN;
    if (lse_ref)
        for (int64_t i = 0; i < n; i++) lse_ref[i] = NAN;
    int32_t q0 = 0;
    for (int32_t r = 0; r < b->desc.num_requests; r++) {
        if (ref_request(a, b, t, r, q0, o_ref, lse_ref)) return -1;
        q0 += b->q_len[r];
    }
    return 0;
}

/* ------------------------------------------------------------- compare */

double fgt_tolerance_o(fg_dtype q_dtype) {
    /* fp32: accumulation error only; fp16/bf16: dominated by the output's own rounding
     * (2^-11 and 2^-8 relative of |O| <= 1), with margin for fp32 accumulation. */
    return q_dtype == FG_DTYPE_FP32 ? 1e-4 : (q_dtype == FG_DTYPE_FP16 ? 2e-3 : 1e-2);
}

double fgt_tolerance_lse(fg_dtype q_dtype) {
    /* LSE is written in fp32 whatever the dtype: only accumulation error. */
    return q_dtype == FG_DTYPE_FP32 ? 1e-4 : 1e-3;
}

static int cmp_rows(const fg_attn_desc *a, const fgt_tensors *t, int32_t qt0, int32_t qt1,
                    const double *o_ref, const double *lse_ref, fgt_cmp *c) {
    const int32_t hq = a->num_q_heads, group = a->num_q_heads / a->num_kv_heads, dv = a->head_dim_v;
    const int32_t h_lo = a->kv_head_begin * group, h_hi = (a->kv_head_begin + fgt_kv_head_count(a)) * group;
    const double to = fgt_tolerance_o(a->q_dtype), tl = fgt_tolerance_lse(a->q_dtype);
    int bad = 0;
    for (int32_t qt = qt0; qt < qt1; qt++)
        for (int32_t h = h_lo; h < h_hi; h++) {
            int64_t ob = qt * t->t.o_stride_token + h * t->t.o_stride_head;
            for (int32_t d = 0; d < dv; d++) {
                double got = load(t->o, a->q_dtype, ob + d), want = o_ref[((int64_t)qt * hq + h) * dv + d];
                double err = fabs(got - want);
                if (!isfinite(got)) err = INFINITY;
                if (err > c->max_abs_o) c->max_abs_o = err;
                if (err > to && !bad) {
                    bad = 1;
                    c->bad_index = ((int64_t)qt * hq + h) * dv + d;
                    snprintf(c->msg, sizeof c->msg,
                             "O[qtok %d][head %d][d %d] = %.8g, reference %.8g (|err| %.3g > tol %.3g)",
                             qt, h, d, got, want, err, to);
                }
            }
            if (t->t.lse && lse_ref) {
                double got = t->t.lse[qt * t->t.lse_stride_token + h * t->t.lse_stride_head];
                double want = lse_ref[(int64_t)qt * hq + h];
                double err = isnan(got) ? INFINITY : fabs(got - want);
                if (err > c->max_abs_lse) c->max_abs_lse = err;
                if (err > tl && !bad) {
                    bad = 1;
                    c->bad_index = (int64_t)qt * hq + h;
                    snprintf(c->msg, sizeof c->msg,
                             "LSE[qtok %d][head %d] = %.8g, reference %.8g (|err| %.3g > tol %.3g)", qt,
                             h, got, want, err, tl);
                }
            }
        }
    return bad;
}

static void cmp_init(fgt_cmp *c) {
    memset(c, 0, sizeof *c);
    c->bad_index = -1;
}

static void cmp_finish(fgt_cmp *c, int bad) {
    if (!bad)
        snprintf(c->msg, sizeof c->msg, "ok: max |err| O %.3g, LSE %.3g", c->max_abs_o, c->max_abs_lse);
}

int fgt_compare(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                const double *o_ref, const double *lse_ref, fgt_cmp *cmp) {
    cmp_init(cmp);
    int bad = cmp_rows(a, t, 0, b->num_q_tokens, o_ref, lse_ref, cmp);
    cmp_finish(cmp, bad);
    return bad;
}

int fgt_compare_request(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                        int32_t r, const double *o_ref, const double *lse_ref, fgt_cmp *cmp) {
    cmp_init(cmp);
    int32_t q0 = q_begin_of(b, r);
    int bad = cmp_rows(a, t, q0, q0 + b->q_len[r], o_ref, lse_ref, cmp);
    cmp_finish(cmp, bad);
    return bad;
}

int fgt_outside_untouched(const fg_attn_desc *a, const fgt_batch *b, const fgt_tensors *t,
                          char *msg, size_t msg_len) {
    const int32_t group = a->num_q_heads / a->num_kv_heads;
    const int32_t h_lo = a->kv_head_begin * group, h_hi = (a->kv_head_begin + fgt_kv_head_count(a)) * group;
    for (int32_t qt = 0; qt < b->num_q_tokens; qt++)
        for (int32_t h = 0; h < a->num_q_heads; h++) {
            if (h >= h_lo && h < h_hi) continue;
            int64_t ob = qt * t->t.o_stride_token + h * t->t.o_stride_head;
            for (int32_t d = 0; d < a->head_dim_v; d++)
                if (!is_poison(t->o, a->q_dtype, ob + d)) {
                    if (msg) snprintf(msg, msg_len, "O[qtok %d][head %d][d %d] outside the plan's heads [%d, %d) was written", qt, h, d, h_lo, h_hi);
                    return 0;
                }
            if (t->t.lse) {
                uint32_t u;
                memcpy(&u, &t->t.lse[qt * t->t.lse_stride_token + h * t->t.lse_stride_head], 4);
                if (u != POISON_LSE) {
                    if (msg) snprintf(msg, msg_len, "LSE[qtok %d][head %d] outside the plan's heads was written", qt, h);
                    return 0;
                }
            }
        }
    if (msg && msg_len) msg[0] = 0;
    return 1;
}

/* ------------------------------------------------------------ expected forest */

typedef struct sort_item {
    const fgt_batch *b;
    int32_t r;
} sort_item;

/* Order requests by their physical-slot strings: page ids compared index by index; on
 * a common page prefix the shorter KV is a prefix of the longer one. */
static int cmp_req(const void *x, const void *y) {
    const sort_item *a = x, *c = y;
    const fgt_batch *b = a->b;
    int32_t na = b->page_indptr[a->r + 1] - b->page_indptr[a->r];
    int32_t nc = b->page_indptr[c->r + 1] - b->page_indptr[c->r];
    const int32_t *pa = b->page_indices + b->page_indptr[a->r], *pc = b->page_indices + b->page_indptr[c->r];
    int32_t n = na < nc ? na : nc;
    for (int32_t i = 0; i < n; i++)
        if (pa[i] != pc[i]) return pa[i] < pc[i] ? -1 : 1;
    int32_t ka = b->kv_len[a->r], kc = b->kv_len[c->r];
    if (ka != kc) return ka < kc ? -1 : 1;
    return a->r < c->r ? -1 : (a->r > c->r);
}

static int32_t lcp_tokens(const fgt_batch *b, int32_t ps, int32_t r, int32_t s) {
    int32_t nr = b->page_indptr[r + 1] - b->page_indptr[r], ns = b->page_indptr[s + 1] - b->page_indptr[s];
    const int32_t *pr = b->page_indices + b->page_indptr[r], *pq = b->page_indices + b->page_indptr[s];
    int32_t n = nr < ns ? nr : ns, k = 0;
    while (k < n && pr[k] == pq[k]) k++;
    int32_t m = b->kv_len[r] < b->kv_len[s] ? b->kv_len[r] : b->kv_len[s];
    if (k < n) return k * ps < m ? k * ps : m;
    return m;
}

int fgt_expected_forest(const fgt_batch *b, int32_t page_size, fgt_forest_expect *out) {
    memset(out, 0, sizeof *out);
    int32_t n = b->desc.num_requests;
    sort_item *it = malloc(sizeof(sort_item) * (size_t)n);
    /* Radix tree nodes: end position and parent; at most 2n nodes. */
    int32_t *end = malloc(sizeof(int32_t) * (size_t)(2 * n + 1));
    int32_t *par = malloc(sizeof(int32_t) * (size_t)(2 * n + 1));
    int32_t *stack = malloc(sizeof(int32_t) * (size_t)(2 * n + 2));
    if (!it || !end || !par || !stack) {
        free(it);
        free(end);
        free(par);
        free(stack);
        return -1;
    }
    for (int32_t i = 0; i < n; i++) it[i] = (sort_item){b, i};
    qsort(it, (size_t)n, sizeof *it, cmp_req);
    /* Node 0 is the virtual root (end 0). Stack = the current root-to-node path. */
    int32_t nn = 1, sp = 0;
    end[0] = 0;
    par[0] = -1;
    stack[sp++] = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t r = it[i].r, len = b->kv_len[r];
        int32_t l = i == 0 ? 0 : lcp_tokens(b, page_size, it[i - 1].r, r);
        int32_t last = -1;
        while (end[stack[sp - 1]] > l) last = stack[--sp];
        if (end[stack[sp - 1]] < l) { /* branch point inside `last`: split it */
            end[nn] = l;
            par[nn] = stack[sp - 1];
            par[last] = nn;
            stack[sp++] = nn++;
        }
        if (len > l) {
            end[nn] = len;
            par[nn] = stack[sp - 1];
            stack[sp++] = nn++;
        }
        out->total_tokens += len;
    }
    out->num_nodes = nn - 1;
    for (int32_t v = 1; v < nn; v++) {
        out->unique_tokens += end[v] - end[par[v]];
        if (par[v] == 0) out->num_roots++;
        int32_t d = 0;
        for (int32_t u = v; u != 0; u = par[u]) d++;
        if (d > out->max_depth) out->max_depth = d;
    }
    free(it);
    free(end);
    free(par);
    free(stack);
    return 0;
}

/* ------------------------------------------------------------- run */

fg_status fgt_run_cpu(fg_context ctx, const fg_attn_desc *a, const fgt_batch *b,
                      fgt_tensors *t, fg_plan_stats *stats_out) {
    fg_plan plan = NULL;
    fg_status st = fg_plan_create(ctx, a, &b->desc, &plan);
    if (st != FG_SUCCESS) return st;
    size_t ws = 0;
    void *w = NULL;
    st = fg_plan_workspace_size(plan, &ws);
    if (st == FG_SUCCESS) {
        size_t alloc = ws ? (ws + 255) / 256 * 256 : 256;
        w = aligned_alloc(256, alloc);
        if (!w) st = FG_ERR_OUT_OF_MEMORY;
    }
    if (st == FG_SUCCESS) st = fg_plan_upload(plan, w, ws, NULL);
    if (st == FG_SUCCESS) st = fg_run(plan, &t->t, w, ws, NULL);
    if (st == FG_SUCCESS && stats_out) st = fg_plan_stats_get(plan, stats_out);
    free(w);
    fg_plan_destroy(plan);
    return st;
}

fg_status fgt_cpu_context(int32_t threads, fg_context *ctx) {
    fg_context_options o;
    fg_context_options_init(&o);
    o.backend = FG_BACKEND_CPU;
    o.num_threads = threads;
    return fg_context_create(&o, ctx);
}

static int fgt_cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : (x < y);
}

double fgt_lpt_makespan(const double *cost, int32_t n, int32_t per, int32_t blocks) {
    if (n < 1 || per < 1 || blocks < 1) return 0.0;
    const int64_t T = (int64_t)n * per;
    const int32_t B = T < blocks ? (int32_t)T : blocks;
    double *c = malloc(sizeof(double) * (size_t)T), *load = calloc((size_t)B, sizeof(double));
    if (!c || !load) {
        free(c);
        free(load);
        return -1.0;
    }
    for (int64_t t = 0; t < T; t++) c[t] = cost[t / per];
    qsort(c, (size_t)T, sizeof(double), fgt_cmp_desc); /* equal values: order is immaterial */
    for (int64_t t = 0; t < T; t++) {
        int32_t m = 0;
        for (int32_t b = 1; b < B; b++)
            if (load[b] < load[m]) m = b;
        load[m] += c[t];
    }
    double mk = 0.0;
    for (int32_t b = 0; b < B; b++) mk = load[b] > mk ? load[b] : mk;
    free(c);
    free(load);
    return mk;
}
