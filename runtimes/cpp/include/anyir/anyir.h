/* anyir/anyir.h - C ABI of the AnyIR runtime (for C, FFI bindings and mobile apps).
 *
 *   anyir_options opt; anyir_options_init(&opt);
 *   anyir_restorer* r = NULL;
 *   if (anyir_open("anyir-tiny.onnx", &opt, &r) != ANYIR_OK) fprintf(stderr, "%s\n", anyir_last_error());
 *   anyir_restore_u8(r, rgb, w, h, stride, out, out_stride);
 *   anyir_close(r);
 *
 * Same behaviour as anyir/restorer.hpp.  Every call returns ANYIR_OK (0) or an error code;
 * anyir_last_error() gives the calling thread's last one-line message.  No exception crosses
 * this ABI.
 */
#ifndef ANYIR_ANYIR_H
#define ANYIR_ANYIR_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define ANYIR_API __declspec(dllexport)
#else
#define ANYIR_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum anyir_status {
  ANYIR_OK = 0,
  ANYIR_E_INVALID_ARGUMENT = 1,
  ANYIR_E_IMAGE = 2,
  ANYIR_E_MODEL = 3,
  ANYIR_E_ENGINE = 4,
  ANYIR_E_UNSUPPORTED = 5,
  ANYIR_E_INTERNAL = 6
} anyir_status;

typedef enum anyir_backend {
  ANYIR_BACKEND_AUTO = 0,
  ANYIR_BACKEND_ONNXRUNTIME = 1,
  ANYIR_BACKEND_OPENVINO = 2,
  ANYIR_BACKEND_TENSORRT = 3,
  ANYIR_BACKEND_EXECUTORCH = 4
} anyir_backend;

#define ANYIR_AUTO_TILE (-1)
#define ANYIR_NO_TILE 0

typedef struct anyir_options {
  int backend;            /* anyir_backend */
  const char* device;     /* NULL or "" = default */
  int threads;            /* 0 = physical cores */
  int tile;               /* ANYIR_AUTO_TILE, ANYIR_NO_TILE or N pixels */
  int overlap;            /* default 32 */
  double memory_limit_mb; /* 0 = $ANYIR_MEMORY_LIMIT_MB or 1024 */
} anyir_options;

typedef struct anyir_restorer anyir_restorer;

ANYIR_API void anyir_options_init(anyir_options* options);
ANYIR_API int anyir_open(const char* model_path, const anyir_options* options, anyir_restorer** out);
ANYIR_API void anyir_close(anyir_restorer* restorer);
/* RGB, HxWx3, strides in bytes (0 = packed); dst must hold height rows of dst_stride bytes. */
ANYIR_API int anyir_restore_u8(const anyir_restorer* restorer, const uint8_t* src, int width, int height,
                               size_t src_stride, uint8_t* dst, size_t dst_stride);
ANYIR_API int anyir_restore_f32(const anyir_restorer* restorer, const float* src, int width, int height,
                                size_t src_stride, float* dst, size_t dst_stride);
ANYIR_API int anyir_size_multiple(const anyir_restorer* restorer);
/* Copies a NUL-terminated metadata value ("anyir_edge.<key>" or <key>) into buf; returns its
 * length (excluding NUL), or -1 if absent.  Truncates to buf_size - 1. */
ANYIR_API int anyir_metadata(const anyir_restorer* restorer, const char* key, char* buf, size_t buf_size);
/* Number of one-line warnings found at open (see Restorer::warnings); anyir_warning copies the
 * i-th into buf like anyir_metadata (returns its length, -1 when i is out of range). */
ANYIR_API int anyir_warning_count(const anyir_restorer* restorer);
ANYIR_API int anyir_warning(const anyir_restorer* restorer, int i, char* buf, size_t buf_size);
ANYIR_API const char* anyir_last_error(void);
ANYIR_API const char* anyir_version(void);

#ifdef __cplusplus
}
#endif

#endif /* ANYIR_ANYIR_H */
