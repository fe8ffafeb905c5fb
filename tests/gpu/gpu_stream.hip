/*
 * Stream and graph helpers for the GPU tests: the tests are C and never include a GPU
 * header, so the few runtime calls they need beyond fg_backend_ops live here, with C
 * linkage. Each returns 0 on success and prints the runtime's error otherwise.
 */
#include <stdio.h>

#include "compat.h"

static int check(hipError_t e, const char *what) {
    if (e == hipSuccess) return 0;
    fprintf(stderr, "%s failed: %s (%s)\n", what, hipGetErrorName(e), hipGetErrorString(e));
    return 1;
}

extern "C" int fgt_gpu_stream_create(void **stream) {
    hipStream_t s = NULL;
    int rc = check(hipStreamCreateWithFlags(&s, hipStreamNonBlocking), "hipStreamCreateWithFlags");
    *stream = s;
    return rc;
}
extern "C" int fgt_gpu_stream_destroy(void *stream) {
    return check(hipStreamDestroy((hipStream_t)stream), "hipStreamDestroy");
}
extern "C" int fgt_gpu_capture_begin(void *stream) {
    return check(hipStreamBeginCapture((hipStream_t)stream, hipStreamCaptureModeThreadLocal),
                 "hipStreamBeginCapture");
}
/* Ends the capture and instantiates it; *exec is the executable graph. */
extern "C" int fgt_gpu_capture_end(void *stream, void **exec) {
    hipGraph_t g = NULL;
    hipGraphExec_t x = NULL;
    if (check(hipStreamEndCapture((hipStream_t)stream, &g), "hipStreamEndCapture")) return 1;
    int rc = check(fg_graph_instantiate(&x, g), "hipGraphInstantiate");
    (void)hipGraphDestroy(g);
    *exec = x;
    return rc;
}
extern "C" int fgt_gpu_graph_launch(void *exec, void *stream) {
    return check(hipGraphLaunch((hipGraphExec_t)exec, (hipStream_t)stream), "hipGraphLaunch");
}
extern "C" int fgt_gpu_graph_destroy(void *exec) {
    return check(hipGraphExecDestroy((hipGraphExec_t)exec), "hipGraphExecDestroy");
}
