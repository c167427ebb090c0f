// OpenCL through the system ICD loader (ocl-icd); 1.2 API with the deprecated entry points allowed.
#define CL_TARGET_OPENCL_VERSION 120
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
