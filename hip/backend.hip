/*
 * The GPU backend's function table (src/backend.h) for the CUDA (nvcc) and HIP
 * (hipcc) builds. run() is what fg_run calls and must be capture-safe: it only
 * launches, with no allocation, no synchronisation and no attribute changes (those
 * happen once, in open). Every runtime call is checked; failures become a status and
 * one sentence naming the call and the runtime's error text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "compat.h"
#include "backend.h"
#include "kernels.h"
#include "partial_mfma.h"

namespace {

struct gpu_state {
    int device;
    int cc_major, cc_minor;
    bool mma;           /* the matrix path exists for this device in this build */
    bool force_portable; /* FG_GPU_KERNEL=portable: debugging and cross-checking the paths */
    int units;          /* SMs / CUs */
    int wave;           /* warp / wave size */
    char arch[32];      /* props->arch */
};

fg_status fail(char *msg, size_t len, fg_status st, const char *call, hipError_t e) {
    if (msg && len) snprintf(msg, len, "%s failed: %s (%s).", call, hipGetErrorName(e), hipGetErrorString(e));
    return st;
}
fg_status say(char *msg, size_t len, fg_status st, const char *text) {
    if (msg && len) snprintf(msg, len, "%s", text);
    return st;
}
#define FG_CHECK(call)                                                                             \
    do {                                                                                           \
        hipError_t e_ = (call);                                                                    \
        if (e_ != hipSuccess) return fail(msg, msg_len, FG_ERR_DEVICE, #call, e_);                 \
    } while (0)

fg_status gpu_open(int32_t index, fg_device_props *props, void **state, char *msg, size_t msg_len) {
    int count = 0;
    hipError_t e = hipGetDeviceCount(&count);
    if (e == hipErrorNoDevice || e == hipErrorInsufficientDriver || (e == hipSuccess && count == 0)) {
        (void)hipGetLastError(); /* clear the sticky "no device" so later queries start clean */
        if (msg && msg_len) snprintf(msg, msg_len, "No GPU device is present (%s).", e == hipSuccess ? "device count is 0" : hipGetErrorString(e));
        return FG_ERR_NO_DEVICE;
    }
    if (e != hipSuccess) return fail(msg, msg_len, FG_ERR_DEVICE, "hipGetDeviceCount", e);
    if (index < 0 || index >= count) {
        if (msg && msg_len) snprintf(msg, msg_len, "device_index %d is out of range: %d device(s) present.", (int)index, count);
        return FG_ERR_INVALID_VALUE;
    }
    FG_CHECK(hipSetDevice(index));
    hipDeviceProp_t p;
    FG_CHECK(hipGetDeviceProperties(&p, index));
    memset(props, 0, sizeof *props);
    snprintf(props->name, sizeof props->name, "%s", p.name);
#if FG_CUDA
    snprintf(props->arch, sizeof props->arch, "sm_%d%d", p.major, p.minor);
#else
    /* gcnArchName carries target features ("gfx90a:sramecc+:xnack-"): keep the processor. */
    snprintf(props->arch, sizeof props->arch, "%s", p.gcnArchName);
    char *colon = strchr(props->arch, ':');
    if (colon) *colon = '\0';
#endif
    props->compute_units = p.multiProcessorCount;
    props->warp_size = p.warpSize;
    props->l2_bytes = p.l2CacheSize;
    props->global_mem_bytes = (int64_t)p.totalGlobalMem;
#if FG_CUDA
    props->max_shared_per_block = (int32_t)p.sharedMemPerBlockOptin;
#else
    props->max_shared_per_block = (int32_t)p.sharedMemPerBlock; /* no opt-in tier on AMD */
#endif

    gpu_state *s = (gpu_state *)calloc(1, sizeof *s);
    if (!s) return say(msg, msg_len, FG_ERR_OUT_OF_MEMORY, "Allocating the GPU backend state failed.");
    s->device = index;
    s->cc_major = p.major;
    s->cc_minor = p.minor;
    s->units = p.multiProcessorCount;
    s->wave = p.warpSize;
    snprintf(s->arch, sizeof s->arch, "%s", props->arch);
#if FG_HAVE_MFMA_PATH
    s->mma = fg_partial_mfma_arch_supported(props->arch);
#else
    s->mma = fg_kernels_have_mma(p.major);
#endif
    const char *env = getenv("FG_GPU_KERNEL");
    s->force_portable = env && strcmp(env, "portable") == 0;
    e = fg_kernels_init(s->mma);
    if (e != hipSuccess) {
        free(s);
        return fail(msg, msg_len, FG_ERR_DEVICE, "hipFuncSetAttribute(MaxDynamicSharedMemorySize)", e);
    }
    *state = s;
    return FG_SUCCESS;
}

void gpu_close(void *state) { free(state); }

fg_status gpu_supports(void *state, const fg_attn_desc *at, char *msg, size_t msg_len) {
    (void)state;
    if (at->q_dtype != FG_DTYPE_FP16 && at->q_dtype != FG_DTYPE_BF16) {
        if (msg && msg_len) snprintf(msg, msg_len, "q_dtype %d is not supported by the GPU kernels: use FG_DTYPE_FP16 or FG_DTYPE_BF16.", (int)at->q_dtype);
        return FG_ERR_UNSUPPORTED;
    }
    if (at->kv_dtype != at->q_dtype) {
        if (msg && msg_len) snprintf(msg, msg_len, "kv_dtype %d differs from q_dtype %d: the GPU kernels need them equal.", (int)at->kv_dtype, (int)at->q_dtype);
        return FG_ERR_UNSUPPORTED;
    }
    if (at->head_dim_qk != at->head_dim_v) {
        if (msg && msg_len) snprintf(msg, msg_len, "head_dim_v %d differs from head_dim_qk %d: the GPU kernels need them equal.", (int)at->head_dim_v, (int)at->head_dim_qk);
        return FG_ERR_UNSUPPORTED;
    }
    if (at->head_dim_qk != 64 && at->head_dim_qk != 128 && at->head_dim_qk != 256) {
        if (msg && msg_len) snprintf(msg, msg_len, "head_dim_qk %d is not supported by the GPU kernels: use 64, 128 or 256.", (int)at->head_dim_qk);
        return FG_ERR_UNSUPPORTED;
    }
    return FG_SUCCESS;
}

fg_status gpu_copy(void *state, void *dst, const void *src, size_t bytes, fg_copy_kind kind,
                   void *stream, char *msg, size_t msg_len) {
    (void)state;
    if (bytes == 0) return FG_SUCCESS;
    const hipMemcpyKind k = kind == FG_COPY_H2D ? hipMemcpyHostToDevice
                          : kind == FG_COPY_D2H ? hipMemcpyDeviceToHost
                                                : hipMemcpyDeviceToDevice;
    FG_CHECK(hipMemcpyAsync(dst, src, bytes, k, (hipStream_t)stream));
    return FG_SUCCESS;
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }
bool stride16(int64_t elems) { return ((elems * 2) & 15) == 0; }

fg_status gpu_run(void *state, const fg_kernel_args *a, void *stream, char *msg, size_t msg_len) {
    gpu_state *s = (gpu_state *)state;
    if ((a->q_dtype != FG_DTYPE_FP16 && a->q_dtype != FG_DTYPE_BF16) || a->kv_dtype != a->q_dtype)
        return say(msg, msg_len, FG_ERR_UNSUPPORTED, "The GPU kernels run fp16 or bf16 with kv_dtype equal to q_dtype.");
    if (a->head_dim_qk != a->head_dim_v ||
        (a->head_dim_qk != 64 && a->head_dim_qk != 128 && a->head_dim_qk != 256))
        return say(msg, msg_len, FG_ERR_UNSUPPORTED, "The GPU kernels run head_dim_qk == head_dim_v in {64, 128, 256}.");
    /* The matrix path moves 16-byte chunks of Q, K and V rows and writes O in pairs:
     * every base and stride must keep those aligned, else take the portable path. */
    const bool vec_ok = aligned16(a->q) && aligned16(a->k) && aligned16(a->v) && aligned16(a->o) &&
                        stride16(a->q_stride_token) && stride16(a->q_stride_head) &&
                        stride16(a->k_stride_page) && stride16(a->k_stride_token) &&
                        stride16(a->k_stride_head) && stride16(a->v_stride_page) &&
                        stride16(a->v_stride_token) && stride16(a->v_stride_head) &&
                        stride16(a->o_stride_token) && stride16(a->o_stride_head);
    const int path = s->mma && !s->force_portable && vec_ok ? FG_PATH_MMA : FG_PATH_PORTABLE;
    hipError_t e = fg_kernels_launch(a, path, (hipStream_t)stream);
    if (e != hipSuccess) return fail(msg, msg_len, FG_ERR_DEVICE, "launching the attention kernels", e);
    return FG_SUCCESS;
}

fg_status gpu_alloc(void *state, void **ptr, size_t bytes, char *msg, size_t msg_len) {
    (void)state;
    *ptr = NULL;
    FG_CHECK(hipMalloc(ptr, bytes ? bytes : 1));
    return FG_SUCCESS;
}
fg_status gpu_free(void *state, void *ptr, char *msg, size_t msg_len) {
    (void)state;
    if (ptr) FG_CHECK(hipFree(ptr));
    return FG_SUCCESS;
}
fg_status gpu_pinned_alloc(void *state, void **ptr, size_t bytes, char *msg, size_t msg_len) {
    (void)state;
    *ptr = NULL;
    FG_CHECK(hipHostMalloc(ptr, bytes ? bytes : 1, hipHostMallocDefault));
    return FG_SUCCESS;
}
fg_status gpu_pinned_free(void *state, void *ptr, char *msg, size_t msg_len) {
    (void)state;
    if (ptr) FG_CHECK(hipHostFree(ptr));
    return FG_SUCCESS;
}
fg_status gpu_sync(void *state, void *stream, char *msg, size_t msg_len) {
    (void)state;
    FG_CHECK(hipStreamSynchronize((hipStream_t)stream));
    /* A kernel fault surfaces here, not at launch: report it as the device error it is. */
    FG_CHECK(hipGetLastError());
    return FG_SUCCESS;
}
fg_status gpu_memset(void *state, void *ptr, int value, size_t bytes, void *stream, char *msg,
                     size_t msg_len) {
    (void)state;
    FG_CHECK(hipMemsetAsync(ptr, value, bytes, (hipStream_t)stream));
    return FG_SUCCESS;
}

/* The queued mode's stand-in for work already in the stream: one thread spins for `cycles`
 * clock cycles, so that the start event, fn's launches and the stop event are all queued
 * on the device before the start event is reached. The events then bracket device time
 * only, as in an engine whose stream (or graph) runs ahead of the host; without it they
 * also bracket the host's submission of fn's launches (the "idle" mode). */
__global__ void spin_kernel(long long cycles) {
    long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
}

fg_status gpu_time_us(void *state, void (*fn)(void *), void *arg, int reps, void *stream,
                      int queued, double *median_us, char *msg, size_t msg_len) {
    (void)state;
    if (reps < 1) reps = 1;
    hipStream_t st = (hipStream_t)stream;
    hipEvent_t ev[2];
    FG_CHECK(hipEventCreate(&ev[0]));
    hipError_t e = hipEventCreate(&ev[1]);
    if (e != hipSuccess) {
        (void)hipEventDestroy(ev[0]);
        return fail(msg, msg_len, FG_ERR_DEVICE, "hipEventCreate", e);
    }
    std::vector<double> t;
    t.reserve((size_t)reps);
    /* warm-up: module load and first-touch stay out of the numbers; its host time sizes
     * the spin (4x the submission time, at least 100 us at 2 GHz) */
    auto h0 = std::chrono::steady_clock::now();
    fn(arg);
    double host_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - h0).count();
    long long spin = (long long)(2000.0 * (4.0 * host_us > 100.0 ? 4.0 * host_us : 100.0));
    if (queued) e = hipStreamSynchronize(st);
    for (int i = 0; i < reps && e == hipSuccess; i++) {
        float ms = 0.f;
        if (queued) {
            spin_kernel<<<1, 1, 0, st>>>(spin);
            if ((e = hipGetLastError()) != hipSuccess) break;
        }
        if ((e = hipEventRecord(ev[0], st)) != hipSuccess) break;
        fn(arg);
        if ((e = hipEventRecord(ev[1], st)) != hipSuccess) break;
        if ((e = hipEventSynchronize(ev[1])) != hipSuccess) break;
        if ((e = hipEventElapsedTime(&ms, ev[0], ev[1])) != hipSuccess) break;
        t.push_back(ms * 1000.0);
    }
    if (e == hipSuccess) e = hipGetLastError();
    (void)hipEventDestroy(ev[0]);
    (void)hipEventDestroy(ev[1]);
    if (e != hipSuccess) return fail(msg, msg_len, FG_ERR_DEVICE, "timing with events", e);
    std::sort(t.begin(), t.end());
    *median_us = t[t.size() / 2];
    return FG_SUCCESS;
}

/* ---- matrix_tflops: the matrix units' rate as our kernels can use it.
 * Every block runs kRateWarps waves, each with kRateAcc independent accumulators fed from
 * registers only (no memory traffic in the loop): NVIDIA sm80+: mma.sync m16n8k16 fp16 ->
 * fp32 (4096 flops per warp instruction); CDNA: MFMA 32x32x8 f16 -> f32 (16384 per wave
 * instruction); elsewhere an fp32 FMA loop (2 flops per lane and instruction). On Hopper
 * this is the mma.sync rate, below what wgmma (cuBLAS) reaches: the kernels issue mma.sync,
 * so it is the ceiling they can approach. */
constexpr int kRateWarps = 8;
constexpr int kRateAcc = 8;
enum { RATE_FMA = 0, RATE_MMA = 1, RATE_MFMA = 2 };

#if FG_HIP && defined(__HIP_DEVICE_COMPILE__) && (defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx940__))
#define FG_RATE_MFMA_DEVICE 1
#else
#define FG_RATE_MFMA_DEVICE 0
#endif

template <int MODE>
__global__ void __launch_bounds__(kRateWarps * 64) matrix_rate_kernel(float *out, int iters, uint32_t seed) {
    const uint32_t x = seed ^ (threadIdx.x * 2654435761u) ^ (blockIdx.x * 40503u);
    float sum = 0.f;
    if (MODE == RATE_MMA) {
#if FG_CUDA && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        /* small fp16 values (exponent field kept low): no overflow, no denormal paths */
        const uint32_t a0 = (x & 0x03ff03ffu) | 0x30003000u, a1 = a0 ^ 0x00010001u;
        const uint32_t a2 = a0 ^ 0x00020002u, a3 = a0 ^ 0x00040004u;
        const uint32_t b0 = a0 ^ 0x00080008u, b1 = a0 ^ 0x00100010u;
        float c[kRateAcc][4];
#pragma unroll
        for (int j = 0; j < kRateAcc; j++) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.f;
        for (int it = 0; it < iters; it++) {
#pragma unroll
            for (int j = 0; j < kRateAcc; j++)
                asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                             "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                             : "+f"(c[j][0]), "+f"(c[j][1]), "+f"(c[j][2]), "+f"(c[j][3])
                             : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
        }
#pragma unroll
        for (int j = 0; j < kRateAcc; j++) sum += c[j][0] + c[j][1] + c[j][2] + c[j][3];
#endif
    } else if (MODE == RATE_MFMA) {
#if FG_RATE_MFMA_DEVICE
        typedef float f32x16 __attribute__((ext_vector_type(16)));
        typedef _Float16 f16x4 __attribute__((ext_vector_type(4)));
        f16x4 av, bv;
        for (int i = 0; i < 4; i++) {
            av[i] = (_Float16)(0.001f * (float)((x >> i) & 15u));
            bv[i] = (_Float16)(0.001f * (float)((x >> (i + 4)) & 15u));
        }
        f32x16 c[kRateAcc / 2];
#pragma unroll
        for (int j = 0; j < kRateAcc / 2; j++)
            for (int i = 0; i < 16; i++) c[j][i] = 0.f;
        for (int it = 0; it < iters; it++) {
#pragma unroll
            for (int j = 0; j < kRateAcc / 2; j++)
                c[j] = __builtin_amdgcn_mfma_f32_32x32x8f16(av, bv, c[j], 0, 0, 0);
        }
#pragma unroll
        for (int j = 0; j < kRateAcc / 2; j++)
            for (int i = 0; i < 16; i++) sum += c[j][i];
#endif
    } else {
        float c[kRateAcc];
        const float m = 1.0f + 1e-7f * (float)(x & 255u), ad = 1e-7f * (float)((x >> 8) & 255u);
#pragma unroll
        for (int j = 0; j < kRateAcc; j++) c[j] = (float)j * 1e-3f;
        for (int it = 0; it < iters; it++) {
#pragma unroll
            for (int r = 0; r < 8; r++)
#pragma unroll
                for (int j = 0; j < kRateAcc; j++) c[j] = fmaf(c[j], m, ad);
        }
#pragma unroll
        for (int j = 0; j < kRateAcc; j++) sum += c[j];
    }
    out[(size_t)blockIdx.x * blockDim.x + threadIdx.x] = sum; /* keeps the loop alive */
}

fg_status gpu_matrix_tflops(void *state, double *tflops, char *msg, size_t msg_len) {
    gpu_state *s = (gpu_state *)state;
    *tflops = 0.0;
    int mode = RATE_FMA;
    const int wave = s->wave > 0 ? s->wave : 32;
#if FG_CUDA
    if (s->cc_major >= 8) mode = RATE_MMA;
#elif FG_HAVE_MFMA_PATH
    if (fg_partial_mfma_arch_supported(s->arch) && wave == 64) mode = RATE_MFMA;
#endif
    const int threads = kRateWarps * wave;
    const int blocks = s->units * 4; /* 32 waves per SM/CU of 8-wave blocks */
    const int iters = mode == RATE_FMA ? 1024 : 2048;
    /* flops of one wave per iteration */
    const double wave_flops = mode == RATE_MMA    ? 2.0 * 16 * 8 * 16 * kRateAcc
                            : mode == RATE_MFMA ? 2.0 * 32 * 32 * 8 * (kRateAcc / 2)
                                                : 2.0 * 8 * kRateAcc * wave;
    const double flops = wave_flops * iters * kRateWarps * blocks;
    float *out = NULL;
    FG_CHECK(hipMalloc((void **)&out, (size_t)blocks * threads * sizeof(float)));
    hipEvent_t ev[2] = {0, 0};
    hipError_t e = hipEventCreate(&ev[0]);
    if (e == hipSuccess) e = hipEventCreate(&ev[1]);
    double best_ms = 0.0;
    for (int rep = 0; rep < 6 && e == hipSuccess; rep++) { /* rep 0 warms up */
        float ms = 0.f;
        if ((e = hipEventRecord(ev[0], 0)) != hipSuccess) break;
        if (mode == RATE_MMA)
            matrix_rate_kernel<RATE_MMA><<<blocks, threads, 0, 0>>>(out, iters, 0x9e3779b9u + rep);
        else if (mode == RATE_MFMA)
            matrix_rate_kernel<RATE_MFMA><<<blocks, threads, 0, 0>>>(out, iters, 0x9e3779b9u + rep);
        else
            matrix_rate_kernel<RATE_FMA><<<blocks, threads, 0, 0>>>(out, iters, 0x9e3779b9u + rep);
        if ((e = hipGetLastError()) != hipSuccess) break;
        if ((e = hipEventRecord(ev[1], 0)) != hipSuccess) break;
        if ((e = hipEventSynchronize(ev[1])) != hipSuccess) break;
        if ((e = hipEventElapsedTime(&ms, ev[0], ev[1])) != hipSuccess) break;
        if (rep > 0 && (best_ms == 0.0 || ms < best_ms)) best_ms = ms;
    }
    if (ev[0]) (void)hipEventDestroy(ev[0]);
    if (ev[1]) (void)hipEventDestroy(ev[1]);
    (void)hipFree(out);
    if (e != hipSuccess) return fail(msg, msg_len, FG_ERR_DEVICE, "timing the matrix-rate kernel", e);
    if (!(best_ms > 0.0)) return say(msg, msg_len, FG_ERR_DEVICE, "The matrix-rate kernel timed at 0 ms.");
    *tflops = flops / (best_ms * 1e-3) / 1e12;
    return FG_SUCCESS;
}

const fg_backend_ops kOps = {
#if FG_CUDA
    "cuda", FG_BACKEND_CUDA,
#else
    "hip", FG_BACKEND_HIP,
#endif
    gpu_open, gpu_close, gpu_supports, gpu_copy, gpu_run,
    gpu_alloc, gpu_free, gpu_pinned_alloc, gpu_pinned_free, gpu_sync, gpu_memset, gpu_time_us,
    gpu_matrix_tflops,
};

} /* namespace */

extern "C" const fg_backend_ops *fg_gpu_backend_ops(void) { return &kOps; }

/* Resident blocks per SM/CU of the partial kernel, for the cost model and the benchmark
 * (not in fg_backend_ops yet: see the report). */
extern "C" int fg_gpu_blocks_per_unit(int head_dim, int matrix_path) {
    int n = 0;
    if (fg_kernels_occupancy(head_dim, matrix_path ? FG_PATH_MMA : FG_PATH_PORTABLE, &n) != hipSuccess) {
        (void)hipGetLastError();
        return 0;
    }
    return n;
}
