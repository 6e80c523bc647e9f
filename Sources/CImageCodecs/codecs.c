#include "umd_image_codecs.h"
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <png.h>

// ---- JPEG: libjpeg's default error handler calls exit(); this one longjmps back. ----

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf escape;
    char *message;
} umd_jpeg_error;

static void umd_jpeg_error_exit(j_common_ptr info) {
    umd_jpeg_error *err = (umd_jpeg_error *)info->err;
    char buffer[JMSG_LENGTH_MAX];
    (*info->err->format_message)(info, buffer);
    snprintf(err->message, UMD_IMAGE_MESSAGE_LENGTH, "JPEG: %s", buffer);
    longjmp(err->escape, 1);
}

// Warnings (level −1) such as "premature end of data segment" mean a damaged file: keep
// the first one's text; the decoder reports failure when any occurred.
static void umd_jpeg_note_warning(j_common_ptr info, int level) {
    umd_jpeg_error *err = (umd_jpeg_error *)info->err;
    if (level >= 0) return;
    if (err->base.num_warnings++ == 0) {
        char buffer[JMSG_LENGTH_MAX];
        (*info->err->format_message)(info, buffer);
        snprintf(err->message, UMD_IMAGE_MESSAGE_LENGTH, "JPEG: %s", buffer);
    }
}

int umd_jpeg_decode(const uint8_t *data, size_t size, size_t max_pixels, umd_image *out) {
    struct jpeg_decompress_struct info;
    umd_jpeg_error err;
    out->pixels = NULL;
    out->message[0] = 0;
    info.err = jpeg_std_error(&err.base);
    err.base.error_exit = umd_jpeg_error_exit;
    err.base.emit_message = umd_jpeg_note_warning;
    err.message = out->message;
    uint8_t *volatile pixels = NULL;
    if (setjmp(err.escape)) {
        jpeg_destroy_decompress(&info);
        free(pixels);
        out->pixels = NULL;
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, (unsigned char *)data, (unsigned long)size);
    if (jpeg_read_header(&info, TRUE) != JPEG_HEADER_OK) {
        snprintf(out->message, UMD_IMAGE_MESSAGE_LENGTH, "JPEG: no image header");
        jpeg_destroy_decompress(&info);
        return 1;
    }
    if ((size_t)info.image_width * info.image_height > max_pixels) {
        snprintf(out->message, UMD_IMAGE_MESSAGE_LENGTH,
                 "JPEG: its header says %ux%u, more than the limit of %zu pixels (--max-image-megapixels)",
                 (unsigned)info.image_width, (unsigned)info.image_height, max_pixels);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
        info.out_color_space = JCS_CMYK;
    } else {
        info.out_color_space = JCS_RGB;
    }
    jpeg_start_decompress(&info);
    int w = (int)info.output_width, h = (int)info.output_height, c = info.output_components;
    pixels = malloc((size_t)w * h * 3);
    uint8_t *row = malloc((size_t)w * c);
    if (!pixels || !row) {
        free(row);
        snprintf(out->message, UMD_IMAGE_MESSAGE_LENGTH, "JPEG: out of memory for %dx%d", w, h);
        jpeg_destroy_decompress(&info);
        free(pixels);
        return 1;
    }
    while (info.output_scanline < info.output_height) {
        int y = (int)info.output_scanline;
        JSAMPROW rows[1] = {row};
        jpeg_read_scanlines(&info, rows, 1);
        uint8_t *dst = pixels + (size_t)y * w * 3;
        if (c == 3) {
            memcpy(dst, row, (size_t)w * 3);
        } else if (c == 4) {   // Adobe CMYK JPEGs are stored inverted
            for (int x = 0; x < w; x++) {
                int k = row[4 * x + 3];
                for (int ch = 0; ch < 3; ch++) dst[3 * x + ch] = (uint8_t)(row[4 * x + ch] * k / 255);
            }
        } else {
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x * c];
        }
    }
    free(row);
    jpeg_finish_decompress(&info);
    long warnings = err.base.num_warnings;
    jpeg_destroy_decompress(&info);
    if (warnings > 0) {   // truncated or damaged data: libjpeg filled the gap with grey
        free(pixels);
        return 1;
    }
    out->width = w;
    out->height = h;
    out->pixels = pixels;
    return 0;
}

int umd_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality,
                    uint8_t **out_data, size_t *out_size, char *message) {
    struct jpeg_compress_struct info;
    umd_jpeg_error err;
    unsigned char *buffer = NULL;
    unsigned long length = 0;
    info.err = jpeg_std_error(&err.base);
    err.base.error_exit = umd_jpeg_error_exit;
    err.message = message;
    if (setjmp(err.escape)) {
        jpeg_destroy_compress(&info);
        free(buffer);
        return 1;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, &buffer, &length);
    info.image_width = (JDIMENSION)width;
    info.image_height = (JDIMENSION)height;
    info.input_components = channels;
    info.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    jpeg_start_compress(&info, TRUE);
    while (info.next_scanline < info.image_height) {
        JSAMPROW row[1] = {(JSAMPROW)(pixels + (size_t)info.next_scanline * width * channels)};
        jpeg_write_scanlines(&info, row, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    *out_data = buffer;
    *out_size = length;
    return 0;
}

// ---- PNG: the simplified API reports errors through png_image.message. ----

int umd_png_decode(const uint8_t *data, size_t size, size_t max_pixels, umd_image *out) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    out->pixels = NULL;
    out->message[0] = 0;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        snprintf(out->message, UMD_IMAGE_MESSAGE_LENGTH, "PNG: %s", image.message);
        return 1;
    }
    if ((size_t)image.width * image.height > max_pixels) {
        snprintf(out->message, UMD_IMAGE_MESSAGE_LENGTH,
                 "PNG: its header says %ux%u, more than the limit of %zu pixels (--max-image-megapixels)",
                 image.width, image.height, max_pixels);
        png_image_free(&image);
        return 1;
    }
    image.format = PNG_FORMAT_RGB;   // 16-bit, palette, grey and alpha all become RGB8
    size_t bytes = PNG_IMAGE_SIZE(image);
    uint8_t *pixels = malloc(bytes);
    if (!pixels) {
        png_image_free(&image);
        snprintf(out->message, UMD_IMAGE_MESSAGE_LENGTH, "PNG: out of memory for %ux%u", image.width, image.height);
        return 1;
    }
    png_color black = {0, 0, 0};
    if (!png_image_finish_read(&image, &black, pixels, 0, NULL)) {
        snprintf(out->message, UMD_IMAGE_MESSAGE_LENGTH, "PNG: %s", image.message);
        free(pixels);
        png_image_free(&image);
        return 1;
    }
    out->width = (int)image.width;
    out->height = (int)image.height;
    out->pixels = pixels;
    return 0;
}

int umd_png_encode(const uint8_t *pixels, int width, int height, int channels,
                   uint8_t **out_data, size_t *out_size, char *message) {
    return umd_png_encode_format(pixels, width, height, channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB,
                                 out_data, out_size, message);
}

int umd_png_encode_format(const void *pixels, int width, int height, unsigned format,
                          uint8_t **out_data, size_t *out_size, char *message) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = format;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, 0, NULL)) {
        snprintf(message, UMD_IMAGE_MESSAGE_LENGTH, "PNG: %s", image.message);
        return 1;
    }
    uint8_t *buffer = malloc(size);
    if (!buffer) {
        snprintf(message, UMD_IMAGE_MESSAGE_LENGTH, "PNG: out of memory");
        return 1;
    }
    if (!png_image_write_to_memory(&image, buffer, &size, 0, pixels, 0, NULL)) {
        snprintf(message, UMD_IMAGE_MESSAGE_LENGTH, "PNG: %s", image.message);
        free(buffer);
        return 1;
    }
    *out_data = buffer;
    *out_size = size;
    return 0;
}

void umd_image_free(void *pointer) { free(pointer); }
