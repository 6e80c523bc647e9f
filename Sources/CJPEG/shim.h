#ifndef UMD_CJPEG_SHIM_H
#define UMD_CJPEG_SHIM_H
// jpeglib.h needs stdio.h (FILE, size_t) first.
#include <stdio.h>
#include <jpeglib.h>
#endif
