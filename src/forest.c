/*
 * Prefix forest construction.
 *
 * From block tables: request r's KV position p lives in physical slot
 * (page_indices[indptr[r] + p / page_size], p % page_size), so two requests hold the
 * same token at p exactly when their tables agree on page p / page_size and both are
 * longer than p. Sorting the requests lexicographically by page ids (shorter first on a
 * tie) puts requests that share prefixes next to each other, and the longest common
 * prefix of two requests is then the minimum over the adjacent pairs between them. The
 * sort is an LCP merge sort: it compares each pair from where the two are known to
 * agree, so it reads about the pages that tell requests apart plus O(R log R), not
 * O(R log R x pages), and hands the adjacent common prefixes on. A shared, partly
 * filled last page is handled by clamping the common prefix to both lengths. From the
 * sorted order and those prefixes, forest_from_sorted lays the nodes out directly in
 * DFS preorder in O(R + nodes).
 *
 * An explicit tree goes as a raw tree (parent, length, source request, end node per
 * request) through finalize(), which numbers nodes in DFS preorder and ranks requests
 * in the same order so that every node's requests form one contiguous rank range.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h> /* cmp_from compares 16 page ids at a time */
#endif

#include "internal.h"

typedef struct raw_tree {
    int32_t n, cap;
    int32_t *parent, *length, *src_req;
} raw_tree;

static int raw_reserve(raw_tree *t, int32_t cap) {
    t->parent = malloc(sizeof(int32_t) * (size_t)cap);
    t->length = malloc(sizeof(int32_t) * (size_t)cap);
    t->src_req = malloc(sizeof(int32_t) * (size_t)cap);
    t->cap = cap;
    t->n = 0;
    return t->parent && t->length && t->src_req;
}

static void raw_free(raw_tree *t) {
    free(t->parent);
    free(t->length);
    free(t->src_req);
}

/* The ten per-node and per-request arrays in one allocation, parent first (fg_forest_free
 * frees parent). nodes < 1 still gets one slot per node array. Returns 0 when out of memory. */
static int forest_arrays(fg_forest *out, int32_t nodes, int32_t R) {
    size_t K = (size_t)(nodes ? nodes : 1), R1 = (size_t)R;
    int32_t *blk = malloc(sizeof(int32_t) * (7 * K + 3 * R1));
    if (!blk) return 0;
    out->parent = blk;
    out->depth = blk + K;
    out->begin = blk + 2 * K;
    out->length = blk + 3 * K;
    out->src_req = blk + 4 * K;
    out->rank_lo = blk + 5 * K;
    out->rank_hi = blk + 6 * K;
    out->req_at_rank = blk + 7 * K;
    out->rank_of_req = blk + 7 * K + R1;
    out->req_node = blk + 7 * K + 2 * R1;
    return 1;
}

void fg_forest_free(fg_forest *f) {
    if (!f) return;
    free(f->parent); /* one block holds all ten arrays (finalize) */
    memset(f, 0, sizeof *f);
}

/*
 * Number the raw tree's nodes in DFS preorder. req_order lists the requests in the
 * order ranks are given (requests ending at a node rank before the node's children;
 * siblings are visited in order of their first request). Nodes no request passes
 * through are dropped. `begin` positions are recomputed from the parents.
 */
static fg_status finalize(const raw_tree *t, int32_t R, const int32_t *req_end,
                          const int32_t *req_order, const int32_t *kv_len, fg_forest *out) {
    int32_t n = t->n;
    fg_status st = FG_ERR_OUT_OF_MEMORY;
    /* one scratch block: first[n] (int64), then ids[n], tmp[max(n, R)], child_off[n + 2],
     * child[n], req_off[n + 1], reqs[R], new_id[n], cnt[R + 1], cur[n + 1], estack[2n + 2] */
    size_t nn = (size_t)n, RR = (size_t)R, nmax = nn > RR ? nn : RR;
    size_t ints = nn + nmax + (nn + 2) + nn + (nn + 1) + RR + nn + (RR + 1) + (nn + 1) + (2 * nn + 2);
    int64_t *first = malloc(sizeof(int64_t) * (nn ? nn : 1) + sizeof(int32_t) * ints);
    int32_t *ids = NULL, *tmp = NULL, *child_off = NULL, *child = NULL, *req_off = NULL, *reqs = NULL,
            *new_id = NULL, *cnt_buf = NULL, *cur_buf = NULL, *estack = NULL;
    memset(out, 0, sizeof *out);
    if (!first) goto done;
    ids = (int32_t *)(first + (nn ? nn : 1));
    tmp = ids + nn;
    child_off = tmp + nmax;
    child = child_off + nn + 2;
    req_off = child + nn;
    reqs = req_off + nn + 1;
    new_id = reqs + RR;
    cnt_buf = new_id + nn;
    cur_buf = cnt_buf + RR + 1;
    estack = cur_buf + nn + 1;
    memset(child_off, 0, sizeof(int32_t) * (nn + 2));
    memset(req_off, 0, sizeof(int32_t) * (nn + 1));

    /* first[v]: earliest request (in req_order) whose path passes through v. Parents
     * may have larger ids than children (split nodes), so walk each request's path. */
    for (int32_t v = 0; v < n; v++) first[v] = INT64_MAX;
    for (int32_t s = 0; s < R; s++) {
        for (int32_t v = req_end[req_order[s]]; v >= 0 && first[v] == INT64_MAX; v = t->parent[v])
            first[v] = s;
    }
    /* Children lists in order of first request; roots under the virtual index n. */
    int32_t kept = 0;
    for (int32_t v = 0; v < n; v++) { /* branch-free: kept <= v, so ids[kept] is in range */
        ids[kept] = v;
        kept += first[v] != INT64_MAX;
    }
    {
        /* Stable counting sort by first request (keys are ranks in [0, R)). */
        int32_t *cnt = cnt_buf;
        memset(cnt, 0, sizeof(int32_t) * (RR + 1));
        for (int32_t i = 0; i < kept; i++) cnt[first[ids[i]] + 1]++;
        for (int32_t r = 0; r < R; r++) cnt[r + 1] += cnt[r];
        for (int32_t i = 0; i < kept; i++) tmp[cnt[first[ids[i]]]++] = ids[i];
        memcpy(ids, tmp, sizeof(int32_t) * (size_t)kept);
    }
    for (int32_t i = 0; i < kept; i++) {
        int32_t p = t->parent[ids[i]];
        child_off[(p < 0 ? n : p) + 1]++;
    }
    /* child_off has n + 2 entries: slots 0..n-1 for nodes, slot n for the roots. */
    for (int32_t v = 0; v <= n; v++) child_off[v + 1] += child_off[v];
    {
        int32_t *cur = cur_buf;
        memcpy(cur, child_off, sizeof(int32_t) * (size_t)(n + 1));
        for (int32_t i = 0; i < kept; i++) {
            int32_t p = t->parent[ids[i]];
            child[cur[p < 0 ? n : p]++] = ids[i];
        }
    }
    /* Requests ending at each node, in req_order. */
    for (int32_t r = 0; r < R; r++) req_off[req_end[r] + 1]++;
    for (int32_t v = 0; v < n; v++) req_off[v + 1] += req_off[v];
    {
        int32_t *cur = cur_buf;
        memcpy(cur, req_off, sizeof(int32_t) * (size_t)(n + 1));
        for (int32_t s = 0; s < R; s++) {
            int32_t r = req_order[s];
            reqs[cur[req_end[r]]++] = r;
        }
    }

    out->num_nodes = kept;
    out->num_requests = R;
    if (!forest_arrays(out, kept, R ? R : 1)) goto done;

    /* Iterative preorder DFS. stack holds raw ids; a node's entry is pushed again as
     * ~id after its children so that rank_hi is set on exit. */
    int32_t next_id = 0, next_rank = 0, sp = 0;
    for (int32_t i = child_off[n + 1] - 1; i >= child_off[n]; i--) estack[sp++] = child[i];
    while (sp > 0) {
        int32_t e = estack[--sp];
        if (e < 0) {
            out->rank_hi[new_id[~e]] = next_rank;
            continue;
        }
        int32_t id = next_id++;
        new_id[e] = id;
        int32_t p = t->parent[e];
        out->parent[id] = p < 0 ? -1 : new_id[p];
        out->depth[id] = p < 0 ? 1 : out->depth[new_id[p]] + 1;
        out->begin[id] = p < 0 ? 0 : out->begin[new_id[p]] + out->length[new_id[p]];
        out->length[id] = t->length[e];
        out->src_req[id] = t->src_req[e];
        out->rank_lo[id] = next_rank;
        if (out->depth[id] > out->max_depth) out->max_depth = out->depth[id];
        if (p < 0) out->num_roots++;
        for (int32_t i = req_off[e]; i < req_off[e + 1]; i++) {
            int32_t r = reqs[i];
            out->req_at_rank[next_rank] = r;
            out->rank_of_req[r] = next_rank++;
            out->req_node[r] = id;
        }
        estack[sp++] = ~e;
        for (int32_t i = child_off[e + 1] - 1; i >= child_off[e]; i--) estack[sp++] = child[i];
    }
    out->unique_tokens = 0;
    out->total_tokens = 0;
    for (int32_t v = 0; v < kept; v++) out->unique_tokens += out->length[v];
    for (int32_t r = 0; r < R; r++) out->total_tokens += kv_len[r];
    st = FG_SUCCESS;
done:
    free(first);
    if (st != FG_SUCCESS) {
        fg_forest_free(out);
        return fg_fail(st, "fg_plan_create: out of host memory building the prefix forest");
    }
    return st;
}

/* ---------------------------------------------------------- block tables */

typedef struct sort_ctx {
    const int32_t *indptr, *indices, *kv_len;
} sort_ctx;

/* Compare requests a and b (lexicographic order of their page ids, then length, then
 * index), knowing that their first h pages agree. *lcp receives the number of leading
 * pages they share (at most the shorter table). Returns nonzero when a < b. Inline:
 * called once per pair, the call and the table bounds it reloads cost about a fifth of
 * the sort. */
static inline int cmp_from(const sort_ctx *c, int32_t a, int32_t b, int32_t h, int32_t *lcp) {
    int32_t na = c->indptr[a + 1] - c->indptr[a], nb = c->indptr[b + 1] - c->indptr[b];
    const int32_t *pa = c->indices + c->indptr[a], *pb = c->indices + c->indptr[b];
    int32_t m = na < nb ? na : nb, k = h;
#ifdef __SSE2__
    /* 16 pages per step, compared inline with SSE2 (x86-64's baseline): one branch per
     * 64 bytes and no call. The pairs compared here agree on ~100 pages and differ
     * within a few more, so the calls of the former memcmp loop (32 pages, then 8: five
     * or six calls a pair) were most of the sort's time; an inline 64-bit word loop
     * measured slower than both. The scalar loop below finds the page that differs. */
    for (; k + 16 <= m; k += 16) {
        const __m128i *va = (const __m128i *)(pa + k), *vb = (const __m128i *)(pb + k);
        __m128i e0 = _mm_cmpeq_epi32(_mm_loadu_si128(va), _mm_loadu_si128(vb));
        __m128i e1 = _mm_cmpeq_epi32(_mm_loadu_si128(va + 1), _mm_loadu_si128(vb + 1));
        __m128i e2 = _mm_cmpeq_epi32(_mm_loadu_si128(va + 2), _mm_loadu_si128(vb + 2));
        __m128i e3 = _mm_cmpeq_epi32(_mm_loadu_si128(va + 3), _mm_loadu_si128(vb + 3));
        if (_mm_movemask_epi8(_mm_and_si128(_mm_and_si128(e0, e1), _mm_and_si128(e2, e3))) != 0xFFFF) break;
    }
#else
    /* 32 pages per memcmp while they agree, then 8, then 1 */
    while (k + 32 <= m && memcmp(pa + k, pb + k, 32 * sizeof(int32_t)) == 0) k += 32;
    while (k + 8 <= m && memcmp(pa + k, pb + k, 8 * sizeof(int32_t)) == 0) k += 8;
#endif
    while (k < m && pa[k] == pb[k]) k++;
    *lcp = k;
    if (k < m) return pa[k] < pb[k];
    if (c->kv_len[a] != c->kv_len[b]) return c->kv_len[a] < c->kv_len[b];
    return a < b;
}

/* Pages (a multiple of 16, at most m) on which each of p[0 .. 4]'s tables agrees with
 * the next (all equal): four adjacent pairs compared in one pass, each table read once
 * where pair by pair the inner ones were read twice. The pass is bound by its loads
 * (the pairs of a batch in tree order agree on ~100 pages each), so it reads 20 vectors
 * per 16 pages where the pairs alone read 32. 0 without SSE2. */
static int32_t common_prefix5(const int32_t *const p[5], int32_t m) {
    int32_t k = 0;
#ifdef __SSE2__
    for (; k + 16 <= m; k += 16) {
        __m128i all = _mm_set1_epi32(-1);
        for (int q = 0; q < 16; q += 4) {
            const __m128i v0 = _mm_loadu_si128((const __m128i *)(p[0] + k + q));
            const __m128i e1 = _mm_cmpeq_epi32(v0, _mm_loadu_si128((const __m128i *)(p[1] + k + q)));
            const __m128i e2 = _mm_cmpeq_epi32(v0, _mm_loadu_si128((const __m128i *)(p[2] + k + q)));
            const __m128i e3 = _mm_cmpeq_epi32(v0, _mm_loadu_si128((const __m128i *)(p[3] + k + q)));
            const __m128i e4 = _mm_cmpeq_epi32(v0, _mm_loadu_si128((const __m128i *)(p[4] + k + q)));
            all = _mm_and_si128(all, _mm_and_si128(_mm_and_si128(e1, e2), _mm_and_si128(e3, e4)));
        }
        if (_mm_movemask_epi8(all) != 0xFFFF) break;
    }
#else
    (void)p;
    (void)m;
#endif
    return k;
}

/*
 * Stable order of the requests by cmp_from, with lcp[s] = pages shared by ids[s - 1]
 * and ids[s]. Natural merge sort that carries each element's common prefix with the
 * last element output (the LCP merge of Ng and Kakehi): a comparison starts where the
 * two candidates are known to agree, so the pages compared in all are about the pages
 * that tell requests apart (plus R log R), not R log R whole tables.
 */
static void sort_requests(const sort_ctx *c, int32_t *ids, int32_t *lcp, int32_t *tid, int32_t *tlcp, int32_t n) {
    /* Natural runs: one pass finds the ascending stretches of the input and the common
     * prefix of every adjacent pair inside them (an input already in order, as batches
     * built in tree order are, is then sorted by this pass alone); then runs are merged
     * pairwise. The order is the unique one cmp_from defines (index breaks ties), and the
     * lcps are those of the adjacent pairs, so the result is the plain merge sort's.
     * tlcp holds 2n + 1 ints: the run starts (and n), then the merge's output lcps. */
    int32_t nruns = 0;
    int32_t *run = tlcp;
    if (n > 0) { lcp[0] = 0; run[nruns++] = 0; }
    int32_t h = 0; /* pages on which ids[s - 1] and ids[s] are known to agree */
    for (int32_t s = 1; s < n; s++) {
        if ((s - 1) % 4 == 0 && s + 3 < n) { /* the next four pairs' common start, at once */
            const int32_t *p[5];
            int32_t m = INT32_MAX;
            for (int j = 0; j < 5; j++) {
                const int32_t r = ids[s - 1 + j], np = c->indptr[r + 1] - c->indptr[r];
                p[j] = c->indices + c->indptr[r];
                m = np < m ? np : m;
            }
            h = common_prefix5(p, m);
        } else if ((s - 1) % 4 == 0) {
            h = 0;
        }
        int32_t m;
        if (cmp_from(c, ids[s], ids[s - 1], h, &m)) { /* ids[s] < ids[s - 1]: a new run */
            lcp[s] = 0;
            run[nruns++] = s;
        } else {
            lcp[s] = m;
        }
    }
    run[nruns] = n;
    int32_t *mlcp = tlcp + n + 1; /* merge output lcps: n entries after the run starts */
    while (nruns > 1) {
        int32_t out_runs = 0;
        for (int32_t r = 0; r < nruns; r += 2) {
            int32_t lo = run[r];
            run[out_runs++] = lo; /* out_runs <= r / 2: run[r..r + 2] are read first */
            if (r + 1 >= nruns) { /* the odd run out: copied */
                for (int32_t i = lo; i < n; i++) { tid[i] = ids[i]; mlcp[i] = lcp[i]; }
                continue;
            }
            int32_t mid = run[r + 1], hi = run[r + 2]; /* run[nruns] == n */
            int32_t i = lo, j = mid, k = lo;
            /* la, lb: pages the heads share with the last element output */
            int32_t la = 0, lb = 0;
            while (i < mid && j < hi) {
                int take_a;
                if (la > lb) take_a = 1;
                else if (la < lb) take_a = 0;
                else {
                    int32_t m;
                    take_a = !cmp_from(c, ids[j], ids[i], la, &m); /* b < a ? b : a (stable) */
                    if (take_a) lb = m; else la = m;
                }
                if (take_a) { tid[k] = ids[i]; mlcp[k++] = la; i++; la = i < mid ? lcp[i] : 0; }
                else { tid[k] = ids[j]; mlcp[k++] = lb; j++; lb = j < hi ? lcp[j] : 0; }
            }
            if (i < mid) { tid[k] = ids[i]; mlcp[k++] = la; i++; }
            while (i < mid) { tid[k] = ids[i]; mlcp[k++] = lcp[i]; i++; }
            if (j < hi) { tid[k] = ids[j]; mlcp[k++] = lb; j++; }
            while (j < hi) { tid[k] = ids[j]; mlcp[k++] = lcp[j]; j++; }
        }
        run[out_runs] = n;
        nruns = out_runs;
        memcpy(ids, tid, sizeof(int32_t) * (size_t)n);
        memcpy(lcp, mlcp, sizeof(int32_t) * (size_t)n);
    }
}

/*
 * The forest of requests in sorted order, straight in DFS preorder (no raw tree, no
 * renumbering). tl[s] is the number of tokens request order[s] shares with
 * order[s - 1] (tl[0] = 0). In sorted order the requests under any node are a
 * contiguous run, a request that ends at a node comes before those that go deeper, and
 * the children of a node come in order of their first request; so the ranks are the
 * sorted positions, and the nodes whose first request is s are numbered next to each
 * other, top-down: they are the chain s opens from tl[s] to its kv_len, cut wherever s
 * parts from a later request. Those cut points are the distinct running minima of
 * tl[s + 1], tl[s + 2], ... above tl[s] (the common prefix of s and t is the minimum
 * of tl between them), which one right-to-left pass with a monotonic stack lists in
 * O(R) in all. A left-to-right pass then lays the chains out with a stack of the
 * current path, closing each node's rank range when a request leaves it.
 */
static fg_status forest_from_sorted(const int32_t *order, const int32_t *tl, const int32_t *kv_len, int32_t R,
                                    int32_t *scratch, fg_forest *out) {
    fg_status st = FG_ERR_OUT_OF_MEMORY;
    memset(out, 0, sizeof *out);
    /* scratch (6R ints): mono, ncut, cut, then the path's ids, begins and ends */
    int32_t *mono = scratch;
    int32_t *ncut = mono + R, *cut = ncut + R, *path = cut + R, *pbeg = path + R, *pend = pbeg + R;

    /* Right to left: mono holds the distinct running minima of tl[s + 1 ..], increasing
     * from bottom to top. s's cut points are those above tl[s] and below its kv_len;
     * they are written downwards from the end of cut, so each request's cuts end up in
     * increasing order and the requests in sorted order. */
    int32_t msp = 0, cw = R, nodes = 0;
    for (int32_t s = R - 1; s >= 0; s--) {
        const int32_t l = tl[s], len = kv_len[order[s]];
        /* One walk down the stack does both: the minima above l are s's cut points
         * (those below len) and leave the stack, with an entry equal to l (at most one:
         * the minima are distinct). Two walks over the same top cost two unpredictable
         * loop exits per request. */
        int32_t k = 0, i = msp - 1;
        for (; i >= 0 && mono[i] >= l; i--)
            if (mono[i] > l && mono[i] < len) { cut[--cw] = mono[i]; k++; }
        ncut[s] = k;
        nodes += l < len ? k + 1 : 0;
        msp = i + 1;
        mono[msp++] = l;
    }

    if (!forest_arrays(out, nodes, R)) goto done;
    out->num_nodes = nodes;
    out->num_requests = R;

    /* Left to right: path[0 .. sp) are the nodes of the previous request's path, with
     * their token ranges beside them. Everything is read and written through locals:
     * through `out` the compiler would have to reload its fields after every store
     * (an int32 store may alias max_depth or num_roots). */
    int32_t *restrict parent = out->parent, *restrict depth = out->depth, *restrict begin = out->begin;
    int32_t *restrict length = out->length, *restrict src_req = out->src_req;
    int32_t *restrict rank_lo = out->rank_lo, *restrict rank_hi = out->rank_hi;
    int32_t *restrict req_at_rank = out->req_at_rank, *restrict rank_of_req = out->rank_of_req;
    int32_t *restrict req_node = out->req_node;
    int32_t sp = 0, id = 0, roots = 0, max_depth = 0;
    int64_t unique = 0, total = 0;
    const int32_t *cp = cut + cw;
    for (int32_t s = 0; s < R; s++) {
        const int32_t r = order[s], l = tl[s], len = kv_len[r];
        while (sp > 0 && pbeg[sp - 1] >= l) rank_hi[path[--sp]] = s;
        /* what s shares ends exactly at the end of the path's last node (a cut point) */
        if (sp > 0 ? pend[sp - 1] != l : l != 0) {
            st = fg_fail(FG_ERR_INTERNAL, "fg_plan_create: prefix forest walk lost its path at request %d", r);
            goto done;
        }
        req_at_rank[s] = r;
        rank_of_req[r] = s;
        total += len;
        if (l == len) { /* whole KV is a prefix of the previous request's */
            req_node[r] = path[sp - 1];
            continue;
        }
        roots += sp == 0;
        const int32_t nc = ncut[s];
        for (int32_t j = 0, b = l; j <= nc; j++) {
            const int32_t e = j < nc ? *cp++ : len;
            parent[id] = sp > 0 ? path[sp - 1] : -1;
            depth[id] = sp + 1;
            begin[id] = b;
            length[id] = e - b;
            src_req[id] = r;
            rank_lo[id] = s;
            pbeg[sp] = b;
            pend[sp] = e;
            path[sp++] = id++;
            b = e;
        }
        if (sp > max_depth) max_depth = sp;
        unique += len - l;
        req_node[r] = id - 1;
    }
    while (sp > 0) rank_hi[path[--sp]] = R;
    out->num_roots = roots;
    out->max_depth = max_depth;
    out->unique_tokens = unique;
    out->total_tokens = total;
    st = FG_SUCCESS;
done:
    if (st != FG_SUCCESS) {
        fg_forest_free(out);
        if (st == FG_ERR_OUT_OF_MEMORY)
            return fg_fail(st, "fg_plan_create: out of host memory building the prefix forest");
    }
    return st;
}

fg_status fg_forest_from_block_tables(const fg_batch_desc *batch, int32_t page_size, int no_sharing,
                                      fg_forest *out) {
    const int32_t R = batch->num_requests;
    const int32_t *kv_len = batch->kv_len;
    sort_ctx c = {batch->page_indptr, batch->page_indices, kv_len};
    /* order[R], tmp[R], lcp[3R + 2] (the sort's pages in common, then its scratch), then
     * forest_from_sorted's scratch [6R]: one allocation */
    int32_t *order = malloc(sizeof(int32_t) * (11 * (size_t)R + 2));
    if (!order) {
        memset(out, 0, sizeof *out);
        return fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_plan_create: out of host memory building the forest");
    }
    int32_t *tmp = order + R, *lcp = tmp + R;
    for (int32_t r = 0; r < R; r++) order[r] = r;
    if (no_sharing) {
        /* every request its own root: nothing in common, in index order */
        for (int32_t s = 0; s < R; s++) lcp[s] = 0;
    } else {
        sort_requests(&c, order, lcp, tmp, lcp + R, R);
        /* pages in common -> tokens in common, clamped to both lengths (a shared, partly
         * filled last page shares only the tokens both hold) */
        for (int32_t s = R - 1; s > 0; s--) {
            int64_t t = (int64_t)lcp[s] * page_size;
            const int32_t q = kv_len[order[s - 1]], len = kv_len[order[s]];
            if (t > q) t = q;
            if (t > len) t = len;
            lcp[s] = (int32_t)t;
        }
        lcp[0] = 0;
    }
    fg_status st = forest_from_sorted(order, lcp, kv_len, R, lcp + 3 * (size_t)R + 2, out);
    free(order);
    return st;
}

/* ---------------------------------------------------------- explicit tree */

fg_status fg_forest_from_tree(const fg_batch_desc *batch, fg_forest *out) {
    const fg_tree_desc *tr = batch->tree;
    int32_t R = batch->num_requests;
    int32_t n = tr->num_nodes;
    if (n < 1 || n > (INT32_MAX - 2) / 2)
        return fg_fail(FG_ERR_INVALID_TREE, "fg_plan_create: batch->tree->num_nodes = %d is outside 1..%d",
                       n, (INT32_MAX - 2) / 2);
    if (!tr->parent || !tr->length || !tr->request_node)
        return fg_fail(FG_ERR_NULL_POINTER, "fg_plan_create: batch->tree->%s is NULL",
                       !tr->parent ? "parent" : !tr->length ? "length" : "request_node");
    for (int32_t v = 0; v < n; v++) {
        if (tr->parent[v] < -1 || tr->parent[v] >= n || tr->parent[v] == v)
            return fg_fail(FG_ERR_INVALID_TREE,
                           "fg_plan_create: batch->tree->parent[%d] = %d is not -1 or another node in 0..%d",
                           v, tr->parent[v], n - 1);
        if (tr->length[v] < 1)
            return fg_fail(FG_ERR_INVALID_TREE, "fg_plan_create: batch->tree->length[%d] = %d is not >= 1",
                           v, tr->length[v]);
    }
    for (int32_t r = 0; r < R; r++)
        if (tr->request_node[r] < 0 || tr->request_node[r] >= n)
            return fg_fail(FG_ERR_INVALID_TREE,
                           "fg_plan_create: batch->tree->request_node[%d] = %d is outside 0..%d", r,
                           tr->request_node[r], n - 1);

    fg_status st = FG_SUCCESS;
    int8_t *state = calloc((size_t)n, 1);
    int64_t *end = malloc(sizeof(int64_t) * (size_t)n);
    int32_t *path = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *order = malloc(sizeof(int32_t) * (size_t)R);
    raw_tree t;
    int ok = raw_reserve(&t, n);
    if (!state || !end || !path || !order || !ok) {
        st = fg_fail(FG_ERR_OUT_OF_MEMORY, "fg_plan_create: out of host memory checking the tree");
        goto done;
    }
    /* Cycle check and end positions: walk up from each node until a finished node or a
     * root; meeting a node of the current walk again is a cycle. */
    for (int32_t v = 0; v < n && st == FG_SUCCESS; v++) {
        int32_t len = 0, u = v;
        while (u >= 0 && state[u] == 0) {
            state[u] = 1;
            path[len++] = u;
            u = tr->parent[u];
        }
        if (u >= 0 && state[u] == 1) {
            st = fg_fail(FG_ERR_INVALID_TREE,
                         "fg_plan_create: batch->tree has a cycle through node %d (parent links loop)", u);
            break;
        }
        int64_t base = u >= 0 ? end[u] : 0;
        for (int32_t i = len - 1; i >= 0; i--) {
            base += tr->length[path[i]];
            end[path[i]] = base;
            state[path[i]] = 2;
        }
    }
    if (st != FG_SUCCESS) goto done;
    for (int32_t r = 0; r < R; r++) {
        int64_t e = end[tr->request_node[r]];
        if (e != batch->kv_len[r]) {
            st = fg_fail(FG_ERR_INVALID_TREE,
                         "fg_plan_create: batch->tree path of request %d (to node %d) holds %lld tokens "
                         "but kv_len[%d] = %d",
                         r, tr->request_node[r], (long long)e, r, batch->kv_len[r]);
            goto done;
        }
    }
    /* Each node is read through its lowest-numbered request: mark paths in index order. */
    for (int32_t v = 0; v < n; v++) t.src_req[v] = -1;
    for (int32_t r = 0; r < R; r++)
        for (int32_t v = tr->request_node[r]; v >= 0 && t.src_req[v] < 0; v = tr->parent[v])
            t.src_req[v] = r;
    for (int32_t v = 0; v < n; v++) {
        t.parent[v] = tr->parent[v];
        t.length[v] = tr->length[v];
        if (t.src_req[v] < 0) t.src_req[v] = 0; /* no request passes: dropped by finalize */
    }
    t.n = n;
    for (int32_t r = 0; r < R; r++) order[r] = r;
    st = finalize(&t, R, tr->request_node, order, batch->kv_len, out);
done:
    free(state);
    free(end);
    free(path);
    free(order);
    raw_free(&t);
    return st;
}
