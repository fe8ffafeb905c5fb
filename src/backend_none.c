/* Builds without a GPU backend: there is no device function table. */
#include "backend.h"

const fg_backend_ops *fg_gpu_backend_ops(void) { return 0; }
