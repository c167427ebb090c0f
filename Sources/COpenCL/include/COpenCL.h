// OpenCL 1.2 API (headers from opencl-headers). The functions are not linked against libOpenCL: they
// are defined in loader.c, which opens the system's ICD loader at run time, so fkp-batch starts (and
// falls back to its CPU engine) on a machine without one.
#ifndef FKP_COPENCL_H
#define FKP_COPENCL_H
#define CL_TARGET_OPENCL_VERSION 120
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>

/// 1 when the ICD loader could be opened, else 0; `fkp_opencl_loader_error` then says why.
int fkp_opencl_loader_available(void);
const char *fkp_opencl_loader_error(void);
#endif
