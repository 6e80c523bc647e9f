// OpenBLAS's CBLAS interface (pkg-config adds the openblas-pthread include dir).
#ifndef UMD_COPENBLAS_SHIM_H
#define UMD_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
