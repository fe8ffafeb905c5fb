/*
 * One stable sort for the planner's cost runs (division estimates and the scheduler):
 * by the double field `c`, largest first, ties kept in input order, which is the order
 * glibc's stable qsort gave, so sums over the sorted runs keep their rounding. Insertion
 * sort on stretches of 16, then bottom-up merges through tmp[n]; no callbacks, because
 * qsort's indirect compare was a measurable share of plan time.
 */
#ifndef FG_SORT_DESC_H
#define FG_SORT_DESC_H

#include <stdint.h>
#include <string.h>

/* Defines `static void NAME(T *a, T *tmp, int64_t n)`. */
#define FG_DEFINE_SORT_BY_COST_DESC(NAME, T)                                                    \
    static void NAME(T *a, T *tmp, int64_t n) {                                                 \
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
