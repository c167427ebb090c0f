// The OpenCL entry points fkp-batch uses, forwarded to the ICD loader (libOpenCL.so.1) opened with
// dlopen on first use. Without a loader every call fails the way a loader with no platform does
// (CL_PLATFORM_NOT_FOUND_KHR), so "no loader" takes the same fallback path as "no platform".
// FKP_OPENCL_LIBRARY names another library (tests use it to simulate a machine without a loader).
// Compiled with hidden visibility: these definitions serve fkp-batch only and never interpose on the
// loader's or a driver's own symbols.
#include "COpenCL.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOT_FOUND (-1001) /* CL_PLATFORM_NOT_FOUND_KHR */

static void *handle;
static char error_text[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void open_loader(void) {
    const char *name = getenv("FKP_OPENCL_LIBRARY");
    if (!name || !*name) name = "libOpenCL.so.1";
    handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *e = dlerror();
        snprintf(error_text, sizeof error_text, "cannot open the OpenCL ICD loader %s: %s", name, e ? e : "unknown error");
    }
}

static void *symbol(const char *name) {
    pthread_once(&once, open_loader);
    return handle ? dlsym(handle, name) : NULL;
}

int fkp_opencl_loader_available(void) {
    pthread_once(&once, open_loader);
    return handle != NULL;
}

const char *fkp_opencl_loader_error(void) {
    pthread_once(&once, open_loader);
    return handle ? "" : error_text;
}

// A function returning cl_int: the loader's, or NOT_FOUND.
#define FORWARD(name, params, args)                                  \
    cl_int name params {                                             \
        typedef cl_int (*fn_t) params;                               \
        static fn_t fn;                                              \
        if (!fn) fn = (fn_t)symbol(#name);                           \
        return fn ? fn args : NOT_FOUND;                             \
    }

// A function returning an object and reporting errors through errcode_ret.
#define FORWARD_OBJECT(type, name, params, args)                     \
    type name params {                                               \
        typedef type (*fn_t) params;                                 \
        static fn_t fn;                                              \
        if (!fn) fn = (fn_t)symbol(#name);                           \
        if (fn) return fn args;                                      \
        if (errcode_ret) *errcode_ret = NOT_FOUND;                   \
        return NULL;                                                 \
    }

typedef void (CL_CALLBACK *build_notify)(cl_program, void *);
typedef void (CL_CALLBACK *context_notify)(const char *, const void *, size_t, void *);

FORWARD(clGetPlatformIDs, (cl_uint n, cl_platform_id *p, cl_uint *np), (n, p, np))
FORWARD(clGetPlatformInfo, (cl_platform_id p, cl_platform_info i, size_t s, void *v, size_t *r), (p, i, s, v, r))
FORWARD(clGetDeviceIDs, (cl_platform_id p, cl_device_type t, cl_uint n, cl_device_id *d, cl_uint *nd), (p, t, n, d, nd))
FORWARD(clGetDeviceInfo, (cl_device_id d, cl_device_info i, size_t s, void *v, size_t *r), (d, i, s, v, r))
FORWARD_OBJECT(cl_context, clCreateContext,
               (const cl_context_properties *p, cl_uint n, const cl_device_id *d, context_notify f, void *u, cl_int *errcode_ret),
               (p, n, d, f, u, errcode_ret))
FORWARD_OBJECT(cl_command_queue, clCreateCommandQueue,
               (cl_context c, cl_device_id d, cl_command_queue_properties p, cl_int *errcode_ret), (c, d, p, errcode_ret))
FORWARD_OBJECT(cl_mem, clCreateBuffer, (cl_context c, cl_mem_flags f, size_t s, void *h, cl_int *errcode_ret), (c, f, s, h, errcode_ret))
FORWARD_OBJECT(cl_program, clCreateProgramWithSource,
               (cl_context c, cl_uint n, const char **s, const size_t *l, cl_int *errcode_ret), (c, n, s, l, errcode_ret))
FORWARD_OBJECT(cl_program, clCreateProgramWithBinary,
               (cl_context c, cl_uint n, const cl_device_id *d, const size_t *l, const unsigned char **b, cl_int *st, cl_int *errcode_ret),
               (c, n, d, l, b, st, errcode_ret))
FORWARD(clBuildProgram, (cl_program p, cl_uint n, const cl_device_id *d, const char *o, build_notify f, void *u), (p, n, d, o, f, u))
FORWARD(clGetProgramInfo, (cl_program p, cl_program_info i, size_t s, void *v, size_t *r), (p, i, s, v, r))
FORWARD(clGetProgramBuildInfo, (cl_program p, cl_device_id d, cl_program_build_info i, size_t s, void *v, size_t *r), (p, d, i, s, v, r))
FORWARD(clCreateKernelsInProgram, (cl_program p, cl_uint n, cl_kernel *k, cl_uint *nr), (p, n, k, nr))
FORWARD(clGetKernelInfo, (cl_kernel k, cl_kernel_info i, size_t s, void *v, size_t *r), (k, i, s, v, r))
FORWARD(clSetKernelArg, (cl_kernel k, cl_uint i, size_t s, const void *v), (k, i, s, v))
FORWARD(clEnqueueNDRangeKernel,
        (cl_command_queue q, cl_kernel k, cl_uint d, const size_t *o, const size_t *g, const size_t *l, cl_uint n, const cl_event *w, cl_event *e),
        (q, k, d, o, g, l, n, w, e))
FORWARD(clEnqueueReadBuffer,
        (cl_command_queue q, cl_mem m, cl_bool b, size_t o, size_t s, void *p, cl_uint n, const cl_event *w, cl_event *e),
        (q, m, b, o, s, p, n, w, e))
FORWARD(clEnqueueWriteBuffer,
        (cl_command_queue q, cl_mem m, cl_bool b, size_t o, size_t s, const void *p, cl_uint n, const cl_event *w, cl_event *e),
        (q, m, b, o, s, p, n, w, e))
FORWARD(clEnqueueFillBuffer,
        (cl_command_queue q, cl_mem m, const void *p, size_t ps, size_t o, size_t s, cl_uint n, const cl_event *w, cl_event *e),
        (q, m, p, ps, o, s, n, w, e))
FORWARD(clFinish, (cl_command_queue q), (q))
FORWARD(clReleaseMemObject, (cl_mem m), (m))
FORWARD(clReleaseKernel, (cl_kernel k), (k))
FORWARD(clReleaseProgram, (cl_program p), (p))
FORWARD(clReleaseCommandQueue, (cl_command_queue q), (q))
FORWARD(clReleaseContext, (cl_context c), (c))
