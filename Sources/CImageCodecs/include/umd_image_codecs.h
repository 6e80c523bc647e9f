// Image decoding and encoding for umd, with every libjpeg/libpng error kept inside C:
// a corrupt file returns an error code and a message, never exits the process.
#ifndef UMD_IMAGE_CODECS_H
#define UMD_IMAGE_CODECS_H
#include <stddef.h>
#include <stdint.h>

#define UMD_IMAGE_MESSAGE_LENGTH 200

typedef struct {
    int width;
    int height;
    uint8_t *pixels;          // RGB8, row-major, width * height * 3; free with umd_image_free
    char message[UMD_IMAGE_MESSAGE_LENGTH];   // set when a call returns non-zero
} umd_image;

// Decodes a JPEG (grey, RGB or CMYK) from memory to RGB8. Returns 0 on success. An image
// of more than max_pixels pixels (from its header) is refused before anything is allocated.
int umd_jpeg_decode(const uint8_t *data, size_t size, size_t max_pixels, umd_image *out);
// Decodes a PNG (grey, grey+alpha, RGB, RGBA, palette, 8 or 16 bit) to RGB8, alpha
// composited onto black. Returns 0 on success; max_pixels as for JPEG.
int umd_png_decode(const uint8_t *data, size_t size, size_t max_pixels, umd_image *out);
// Encodes RGB8 (channels 3) or grey (channels 1) as JPEG into a malloc'ed buffer.
int umd_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality,
                    uint8_t **out_data, size_t *out_size, char *message);
// Encodes RGB8 (channels 3) or grey (channels 1) as PNG into a malloc'ed buffer.
int umd_png_encode(const uint8_t *pixels, int width, int height, int channels,
                   uint8_t **out_data, size_t *out_size, char *message);
// Encodes with an explicit libpng simplified-API format (PNG_FORMAT_* bits: alpha, colour,
// linear = 16-bit); `pixels` holds PNG_IMAGE_SIZE bytes of that format. For tests.
int umd_png_encode_format(const void *pixels, int width, int height, unsigned format,
                          uint8_t **out_data, size_t *out_size, char *message);
void umd_image_free(void *pointer);
#endif
