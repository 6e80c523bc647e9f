#ifndef UMD_CZSTD_SHIM_H
#define UMD_CZSTD_SHIM_H
#include <zstd.h>
// ZSTD_CONTENTSIZE_ERROR / _UNKNOWN are macros of unsigned long long casts.
static inline unsigned long long umd_zstd_contentsize_error(void) { return ZSTD_CONTENTSIZE_ERROR; }
static inline unsigned long long umd_zstd_contentsize_unknown(void) { return ZSTD_CONTENTSIZE_UNKNOWN; }
#endif
