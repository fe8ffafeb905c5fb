/*
 * Portability layer: the kernels and the backend are written once in HIP's dialect
 * (hip* runtime names); under nvcc this header maps those names to CUDA's own, so an
 * NVIDIA build needs no HIP install. We deliberately do not include Debian's
 * hip/nvidia_detail headers: HIP 5.2's versions use CUDA APIs that CUDA 12/13 removed
 * and do not compile with nvcc 13.
 *
 * Also here: the wave size as a compile-time constant per device target, the one
 * shuffle wrapper, 16-byte vector types, fp16/bf16 conversions (HIP 5.2 has no
 * hip_bf16.h) and asynchronous global->shared copies where the target has them.
 */
#ifndef FG_HIP_COMPAT_H
#define FG_HIP_COMPAT_H

#include <stdint.h>

#if defined(__CUDACC__) && !defined(__HIP__)
#define FG_CUDA 1
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#elif defined(__HIP__) || defined(__HIPCC__)
#define FG_HIP 1
#include <hip/hip_runtime.h>
#include <hip/hip_fp16.h>
#else
#error "hip/compat.h is for GPU translation units (nvcc or hipcc) only"
#endif

#include "lane_math.h"

/* ------------------------------------------------------------ runtime names
 * One-to-one renames: the CUDA runtime has the same call with the same arguments.
 * Only what the project uses is mapped, so a new use fails to compile under nvcc
 * instead of silently meaning something else. */
#if FG_CUDA
#define hipError_t cudaError_t
#define hipSuccess cudaSuccess
#define hipErrorNoDevice cudaErrorNoDevice
#define hipErrorInvalidValue cudaErrorInvalidValue
#define hipErrorNoKernelImageForDevice cudaErrorNoKernelImageForDevice
#define hipErrorInsufficientDriver cudaErrorInsufficientDriver
#define hipGetErrorString cudaGetErrorString
#define hipGetErrorName cudaGetErrorName
#define hipGetLastError cudaGetLastError
#define hipPeekAtLastError cudaPeekAtLastError
#define hipGetDeviceCount cudaGetDeviceCount
#define hipSetDevice cudaSetDevice
#define hipGetDevice cudaGetDevice
#define hipDeviceProp_t cudaDeviceProp
#define hipGetDeviceProperties cudaGetDeviceProperties
#define hipDeviceSynchronize cudaDeviceSynchronize
#define hipMalloc cudaMalloc
#define hipFree cudaFree
/* hipHostMalloc's default flags give portable pinned memory, as cudaMallocHost does. */
#define hipHostMalloc(p, n, flags) cudaMallocHost((p), (n))
#define hipHostFree cudaFreeHost
#define hipHostMallocDefault 0
#define hipMemcpyKind cudaMemcpyKind
#define hipMemcpyAsync cudaMemcpyAsync
#define hipMemcpy cudaMemcpy
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define hipMemcpyDefault cudaMemcpyDefault
#define hipMemsetAsync cudaMemsetAsync
#define hipStream_t cudaStream_t
#define hipStreamCreate cudaStreamCreate
#define hipStreamCreateWithFlags cudaStreamCreateWithFlags
#define hipStreamNonBlocking cudaStreamNonBlocking
#define hipStreamDestroy cudaStreamDestroy
#define hipStreamSynchronize cudaStreamSynchronize
#define hipStreamCaptureStatus cudaStreamCaptureStatus
#define hipStreamCaptureStatusNone cudaStreamCaptureStatusNone
#define hipStreamIsCapturing cudaStreamIsCapturing
#define hipStreamBeginCapture cudaStreamBeginCapture
#define hipStreamCaptureModeGlobal cudaStreamCaptureModeGlobal
#define hipStreamCaptureModeThreadLocal cudaStreamCaptureModeThreadLocal
#define hipStreamEndCapture cudaStreamEndCapture
#define hipGraph_t cudaGraph_t
#define hipGraphExec_t cudaGraphExec_t
#define hipGraphLaunch cudaGraphLaunch
#define hipGraphDestroy cudaGraphDestroy
#define hipGraphExecDestroy cudaGraphExecDestroy
#define hipEvent_t cudaEvent_t
#define hipEventCreate cudaEventCreate
#define hipEventDestroy cudaEventDestroy
#define hipEventRecord cudaEventRecord
#define hipEventSynchronize cudaEventSynchronize
#define hipEventElapsedTime cudaEventElapsedTime
#define hipFuncSetAttribute cudaFuncSetAttribute
#define hipFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define hipOccupancyMaxActiveBlocksPerMultiprocessor cudaOccupancyMaxActiveBlocksPerMultiprocessor
#define hipDeviceGetAttribute cudaDeviceGetAttribute
#define hipDeviceAttributeMultiprocessorCount cudaDevAttrMultiProcessorCount
#endif

/* cudaGraphInstantiate lost its error-node/log arguments in CUDA 12; HIP 5.2 still
 * has them. One call site for both. */
static inline hipError_t fg_graph_instantiate(hipGraphExec_t *exec, hipGraph_t graph) {
#if FG_CUDA
    return cudaGraphInstantiate(exec, graph, 0ULL);
#else
    return hipGraphInstantiate(exec, graph, NULL, NULL, 0);
#endif
}

/* ------------------------------------------------------------ wave size
 * A compile-time constant on the device, taken from the target: CDNA (gfx9: MI100,
 * MI200, MI300) runs wave64, RDNA and NVIDIA run 32. `warpSize` is not a constant
 * expression in newer ROCm, so never size arrays or unroll loops with it. In a host
 * pass the value is a placeholder: host code queries the device at run time. */
#if FG_HIP && defined(__HIP_DEVICE_COMPILE__) && defined(__GFX9__)
#define FG_WAVE_SIZE 64
#else
#define FG_WAVE_SIZE 32
#endif

/* The shuffle wrappers. CUDA wants a 32-bit participation mask (all lanes of a
 * warp of 32); HIP's __shfl_xor takes none but its waves may be 64 wide. */
__device__ __forceinline__ float fg_shfl_xor(uint64_t lane_mask, float v, int lane_xor) {
#if FG_CUDA
    return __shfl_xor_sync((unsigned)lane_mask, v, lane_xor, FG_WAVE_SIZE);
#else
    (void)lane_mask;
    return __shfl_xor(v, lane_xor, FG_WAVE_SIZE);
#endif
}

/* Lane src's value of v, for every lane (the merge broadcasts per-slot weights). */
__device__ __forceinline__ float fg_shfl_idx(uint64_t lane_mask, float v, int src) {
#if FG_CUDA
    return __shfl_sync((unsigned)lane_mask, v, src, FG_WAVE_SIZE);
#else
    (void)lane_mask;
    return __shfl(v, src, FG_WAVE_SIZE);
#endif
}

__device__ __forceinline__ float fg_wave_sum(float v) {
    const uint64_t mask = fg_lane_full_mask(FG_WAVE_SIZE);
#pragma unroll
    for (int off = FG_WAVE_SIZE / 2; off > 0; off >>= 1) v += fg_shfl_xor(mask, v, off);
    return v;
}

/* ------------------------------------------------------------ 16-byte vectors
 * uint4 exists in both runtimes' vector types and lowers to one 128-bit load/store
 * (LDG.128 / global_load_dwordx4) when the address is 16-byte aligned. */
typedef uint4 fg_vec16;

/* ------------------------------------------------------------ fp16 / bf16
 * Storage is raw 16-bit patterns (uint16_t) so the kernels need no bf16 type from the
 * runtime (HIP 5.2 has none); conversions go through the hardware where it has them. */
__device__ __forceinline__ float fg_f16_to_f32(uint16_t h) {
#if FG_CUDA
    return __half2float(__ushort_as_half(h));
#else
    __half x;
    __builtin_memcpy(&x, &h, 2);
    return __half2float(x);
#endif
}
__device__ __forceinline__ uint16_t fg_f32_to_f16(float f) {
#if FG_CUDA
    return __half_as_ushort(__float2half_rn(f));
#else
    __half x = __float2half(f);
    uint16_t h;
    __builtin_memcpy(&h, &x, 2);
    return h;
#endif
}
__device__ __forceinline__ float fg_bf16_to_f32(uint16_t b) {
    return __uint_as_float((uint32_t)b << 16);
}
__device__ __forceinline__ uint16_t fg_f32_to_bf16(float f) {
#if FG_CUDA
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(x >> 16);
#endif
}

/* Dtype tags for templates; values are fg_dtype's. */
enum { FG_T_F16 = 1, FG_T_BF16 = 2 };

template <int T> __device__ __forceinline__ float fg_to_f32(uint16_t x) {
    return T == FG_T_F16 ? fg_f16_to_f32(x) : fg_bf16_to_f32(x);
}
template <int T> __device__ __forceinline__ uint16_t fg_from_f32(float x) {
    return T == FG_T_F16 ? fg_f32_to_f16(x) : fg_f32_to_bf16(x);
}
/* Two floats packed into one 32-bit register of the matrix-instruction operand type. */
template <int T> __device__ __forceinline__ uint32_t fg_pack2(float lo, float hi) {
#if FG_CUDA
    if (T == FG_T_F16) {
        __half2 h = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    } else {
        __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&b);
    }
#else
    return (uint32_t)fg_from_f32<T>(lo) | ((uint32_t)fg_from_f32<T>(hi) << 16);
#endif
}

/* ------------------------------------------------------------ async copies
 * sm80+ has cp.async (global -> shared without a register round trip, completion by
 * groups), which lets a block keep the next KV tile in flight while it computes on
 * this one. Elsewhere the copy is an ordinary load/store and the wait is a no-op:
 * the code is the same, only the overlap is lost. src_bytes < 16 zero-fills the rest
 * (used for KV positions past the end of a tile, so masked columns hold zeros, not
 * stale shared memory that could be NaN). */
#if FG_CUDA && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define FG_HAS_CP_ASYNC 1
#else
#define FG_HAS_CP_ASYNC 0
#endif

__device__ __forceinline__ void fg_cp_async16(void *smem, const void *gmem, int src_bytes) {
#if FG_HAS_CP_ASYNC
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
                 "r"(src_bytes));
#else
    fg_vec16 v = make_uint4(0u, 0u, 0u, 0u);
    if (src_bytes > 0) v = *reinterpret_cast<const fg_vec16 *>(gmem);
    *reinterpret_cast<fg_vec16 *>(smem) = v;
#endif
}
__device__ __forceinline__ void fg_cp_async_commit() {
#if FG_HAS_CP_ASYNC
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N> __device__ __forceinline__ void fg_cp_async_wait() {
#if FG_HAS_CP_ASYNC
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

#endif /* FG_HIP_COMPAT_H */
