/*
 * One stable sort for the planner's cost runs (division estimates and the scheduler):
 * by the double field `c`, largest first, ties kept in input order, which is the order
 * glibc's stable qsort gave, so sums over the sorted runs keep their rounding. Insertion
 * sort on stretches of 16, then bottom-up merges through tmp[n]; no callbacks, because
 * qsort's indirect compare was a measurable share of plan time.
 *
 * Planner runs usually hold only a handful of distinct costs (sibling leaves, equal row
 * groups, the chunks of one node), so the sort first tries to go by cost class: find
 * the distinct costs (at most FG_SORT_MAX_CLASSES, else it falls back to the merge
 * sort), order them, and place the elements by a stable counting scatter, in O(n x
 * classes) with no data movement beyond one copy. Both give the unique stable order
 * (NaN, which would break it, sends the input to the merge sort), so the bytes agree.
 */
#ifndef FG_SORT_DESC_H
#define FG_SORT_DESC_H

#include <stdint.h>
#include <string.h>

#define FG_SORT_MAX_CLASSES 16
/* inputs up to this long keep each element's class on the stack between the passes */
#define FG_SORT_CLASS_MEMO 2048

/* The class of cost x among cls[0 .. *ncls) (comparing with ==, as the merge sort's `<`
 * does: 0.0 and -0.0 are one class), adding it when there is room; -1 when the classes
 * are full. `hint` is the last class found: equal costs tend to come in runs. */
static inline int fg_sort_class_of(double x, double *cls, int *ncls, int hint) {
    if (hint >= 0 && cls[hint] == x) return hint;
    for (int k = 0; k < *ncls; k++)
        if (cls[k] == x) return k;
    if (*ncls == FG_SORT_MAX_CLASSES) return -1;
    cls[*ncls] = x;
    return (*ncls)++;
}

/* Defines `static void NAME(T *a, T *tmp, int64_t n)`. */
#define FG_DEFINE_SORT_BY_COST_DESC(NAME, T)                                                    \
    /* The class sort: 0 when the costs hold too many classes (or a NaN). */                    \
    static int NAME##_by_class(T *a, T *tmp, int64_t n) {                                       \
        double cls[FG_SORT_MAX_CLASSES];                                                        \
        int64_t cnt[FG_SORT_MAX_CLASSES];                                                       \
        int ord[FG_SORT_MAX_CLASSES], rank[FG_SORT_MAX_CLASSES], ncls = 0, k = -1;              \
        /* each element's class, found once (short inputs: the common case) */                 \
        unsigned char ci[FG_SORT_CLASS_MEMO];                                                   \
        const int memo = n <= FG_SORT_CLASS_MEMO;                                               \
        for (int64_t i = 0; i < n; i++) {                                                       \
            if (a[i].c != a[i].c) return 0; /* NaN */                                           \
            if ((k = fg_sort_class_of(a[i].c, cls, &ncls, k)) < 0) return 0;                    \
            if (memo) ci[i] = (unsigned char)k;                                                 \
        }                                                                                       \
        for (int c = 0; c < ncls; c++) { /* classes by cost, largest first (all distinct) */    \
            int j = c;                                                                          \
            while (j > 0 && cls[ord[j - 1]] < cls[c]) { ord[j] = ord[j - 1]; j--; }             \
            ord[j] = c;                                                                         \
        }                                                                                       \
        for (int c = 0; c < ncls; c++) { rank[ord[c]] = c; cnt[c] = 0; }                        \
        k = -1;                                                                                 \
        for (int64_t i = 0; i < n; i++) {                                                       \
            k = memo ? ci[i] : fg_sort_class_of(a[i].c, cls, &ncls, k);                         \
            cnt[rank[k]]++;                                                                     \
        }                                                                                       \
        for (int64_t c = 0, at = 0; c < ncls; c++) { int64_t m = cnt[c]; cnt[c] = at; at += m; } \
        k = -1;                                                                                 \
        for (int64_t i = 0; i < n; i++) {                                                       \
            k = memo ? ci[i] : fg_sort_class_of(a[i].c, cls, &ncls, k);                         \
            tmp[cnt[rank[k]]++] = a[i];                                                         \
        }                                                                                       \
        memcpy(a, tmp, sizeof(T) * (size_t)n);                                                  \
        return 1;                                                                               \
    }                                                                                           \
    static void NAME(T *a, T *tmp, int64_t n) {                                                 \
        if (n <= 1 || NAME##_by_class(a, tmp, n)) return;                                       \
        const int64_t S = 16;                                                                   \
        for (int64_t lo = 0; lo < n; lo += S) {                                                 \
            int64_t hi = lo + S < n ? lo + S : n;                                               \
            for (int64_t i = lo + 1; i < hi; i++) {                                             \
                T x = a[i];                                                                     \
                int64_t j = i;                                                                  \
                while (j > lo && a[j - 1].c < x.c) { a[j] = a[j - 1]; j--; }                    \
                a[j] = x;                                                                       \
            }                                                                                   \
        }                                                                                       \
        T *src = a, *dst = tmp;                                                                 \
        for (int64_t w = S; w < n; w *= 2) {                                                    \
            for (int64_t lo = 0; lo < n; lo += 2 * w) {                                         \
                int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;    \
                int64_t i = lo, j = mid, k = lo;                                                \
                if (mid < hi && !(src[mid - 1].c < src[mid].c)) { /* already in order */        \
                    memcpy(dst + lo, src + lo, sizeof(T) * (size_t)(hi - lo));                  \
                    continue;                                                                   \
                }                                                                               \
                while (i < mid && j < hi) dst[k++] = src[i].c < src[j].c ? src[j++] : src[i++]; \
                while (i < mid) dst[k++] = src[i++];                                            \
                while (j < hi) dst[k++] = src[j++];                                             \
            }                                                                                   \
            T *t_ = src; src = dst; dst = t_;                                                   \
        }                                                                                       \
        if (src != a) memcpy(a, src, sizeof(T) * (size_t)n);                                    \
    }

#endif /* FG_SORT_DESC_H */
