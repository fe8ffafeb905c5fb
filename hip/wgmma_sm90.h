/*
 * sm_90a warpgroup MMA (wgmma.mma_async) for kernel v9 (hip/attention.hip, partial_mma4<WG>):
 * A in registers, B from a shared-memory descriptor, f32 accumulators:
 * D[64 x N] (+)= A[64 x 16] * B[16 x N].
 * A's registers are mma.sync m16n8k16's A fragment for the warp's 16 rows (warp w of the
 * warpgroup owns rows 16w..16w+15); D's are the m16n8 accumulator layout repeated over
 * the N / 8 column groups: d[4j + i] is row (lane / 4) + 8 (i / 2), column 8j + 2 (lane % 4)
 * + i % 2 of the warp's rows. TB = 1 reads B as MN-major (transposed), 0 as K-major.
 * scale_d = 0 ignores D's old value (the first k step of a product).
 * The instruction wrappers (one operand per accumulator register) are generated into
 * wgmma_sm90_ops.h by hip/tools/gen_wgmma.py. Only defined where the arch-specific sm_90a
 * features are compiled (FG_HAVE_WGMMA).
 */
#ifndef FG_HIP_WGMMA_SM90_H
#define FG_HIP_WGMMA_SM90_H

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FG_HAVE_WGMMA 1
#include "wgmma_sm90_ops.h"

/* D += A * B for the element type T (FG_T_F16 / FG_T_BF16). */
template <int T, int N, int TB>
__device__ __forceinline__ void fg_wgmma(float *d, const uint32_t a[4], uint64_t desc, int scale_d) {
    static_assert(N == 64 || N == 128, "wgmma shapes generated: n64, n128");
    if constexpr (N == 64) {
        if constexpr (T == FG_T_F16) fg_wgmma_m64n64k16_f16<TB>(d, a, desc, scale_d);
        else fg_wgmma_m64n64k16_bf16<TB>(d, a, desc, scale_d);
    } else {
        if constexpr (T == FG_T_F16) fg_wgmma_m64n128k16_f16<TB>(d, a, desc, scale_d);
        else fg_wgmma_m64n128k16_bf16<TB>(d, a, desc, scale_d);
    }
}

/* Orders this thread's earlier register writes (accumulators, A fragments) before the
 * warpgroup's next wgmma.mma_async reads them. */
__device__ __forceinline__ void fg_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void fg_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void fg_wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from moving accesses of an accumulator register across the
 * asynchronous region (between mma_async and its wait_group). */
__device__ __forceinline__ void fg_wgmma_pin(float &r) { asm volatile("" : "+f"(r)::"memory"); }
/* cp.async writes shared memory through the generic proxy and wgmma reads it through
 * the async proxy: each writer fences after its copies landed, before the barrier. */
__device__ __forceinline__ void fg_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/* Shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride
 * byte offsets (16-byte units, 14 bits each), layout type 1 in bits 62-63. The tile's
 * 8-row groups must start on 1024-byte boundaries (the swizzle XORs address bits 4-6
 * with bits 7-9). */
__device__ __forceinline__ uint64_t fg_wgmma_desc_sw128(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | ((uint64_t)1 << 62);
}
#endif

#endif /* FG_HIP_WGMMA_SM90_H */
