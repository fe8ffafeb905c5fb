/* Status strings, the thread-local last-error sentence, and the version. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char g_last_error[512];

fg_status fg_fail(fg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
    va_end(ap);
    return status;
}

void fg_clear_error(void) { g_last_error[0] = '\0'; }

const char *fg_last_error(void) { return g_last_error; }

const char *fg_status_string(fg_status status) {
    switch (status) {
    case FG_SUCCESS: return "FG_SUCCESS";
    case FG_ERR_NULL_POINTER: return "FG_ERR_NULL_POINTER";
    case FG_ERR_INVALID_VALUE: return "FG_ERR_INVALID_VALUE";
    case FG_ERR_OVERFLOW: return "FG_ERR_OVERFLOW";
    case FG_ERR_SHAPE_MISMATCH: return "FG_ERR_SHAPE_MISMATCH";
    case FG_ERR_PAGE_OUT_OF_RANGE: return "FG_ERR_PAGE_OUT_OF_RANGE";
    case FG_ERR_INVALID_TREE: return "FG_ERR_INVALID_TREE";
    case FG_ERR_UNSUPPORTED: return "FG_ERR_UNSUPPORTED";
    case FG_ERR_OUT_OF_MEMORY: return "FG_ERR_OUT_OF_MEMORY";
    case FG_ERR_WORKSPACE_TOO_SMALL: return "FG_ERR_WORKSPACE_TOO_SMALL";
    case FG_ERR_NOT_UPLOADED: return "FG_ERR_NOT_UPLOADED";
    case FG_ERR_NO_DEVICE: return "FG_ERR_NO_DEVICE";
    case FG_ERR_DEVICE: return "FG_ERR_DEVICE";
    case FG_ERR_CALIBRATION: return "FG_ERR_CALIBRATION";
    case FG_ERR_IO: return "FG_ERR_IO";
    case FG_ERR_INTERNAL: return "FG_ERR_INTERNAL";
    }
    return "FG_ERR_UNKNOWN_STATUS";
}

#define FG_STR2(x) #x
#define FG_STR(x) FG_STR2(x)

int fg_version(void) { return FG_VERSION; }

const char *fg_version_string(void) {
    return FG_STR(FG_VERSION_MAJOR) "." FG_STR(FG_VERSION_MINOR) "." FG_STR(FG_VERSION_PATCH);
}
