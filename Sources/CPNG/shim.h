#ifndef UMD_CPNG_SHIM_H
#define UMD_CPNG_SHIM_H
#include <png.h>
// PNG_IMAGE_SIZE and friends are macros; the simplified API's format constants too.
static inline png_uint_32 umd_png_format_rgb(void) { return PNG_FORMAT_RGB; }
static inline png_uint_32 umd_png_format_rgba(void) { return PNG_FORMAT_RGBA; }
static inline png_uint_32 umd_png_format_gray(void) { return PNG_FORMAT_GRAY; }
static inline png_uint_32 umd_png_image_version(void) { return PNG_IMAGE_VERSION; }
#endif
