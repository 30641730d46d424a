// The C ABI (anyir/anyir.h) over anyir::Restorer: exceptions become status codes + a
// thread-local one-line message.
#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "anyir/anyir.h"
#include "anyir/restorer.hpp"
#include "metadata_keys.hpp"

struct anyir_restorer {
  anyir::Restorer r;
};

namespace {
thread_local std::string g_last_error;

template <class F>
int guarded(F&& f) {
  try {
    f();
    g_last_error.clear();
    return ANYIR_OK;
  } catch (const anyir::Error& e) {
    g_last_error = e.what();
    return static_cast<int>(e.code());
  } catch (const std::bad_alloc&) {
    g_last_error = "out of memory";
    return ANYIR_E_INTERNAL;
  } catch (const std::exception& e) {
    g_last_error = e.what();
    return ANYIR_E_INTERNAL;
  } catch (...) {
    g_last_error = "unknown error";
    return ANYIR_E_INTERNAL;
  }
}

int null_arg(const char* what) {
  g_last_error = std::string("null ") + what;
  return ANYIR_E_INVALID_ARGUMENT;
}
}  // namespace

extern "C" {

void anyir_options_init(anyir_options* o) {
  if (!o) return;
  o->backend = ANYIR_BACKEND_AUTO;
  o->device = nullptr;
  o->threads = 0;
  o->tile = ANYIR_AUTO_TILE;
  o->overlap = 32;
  o->memory_limit_mb = 0;
}

int anyir_open(const char* path, const anyir_options* options, anyir_restorer** out) {
  if (!out) return null_arg("output pointer");
  *out = nullptr;
  if (!path) return null_arg("model path");
  return guarded([&] {
    anyir::Options o;
    if (options) {
      if (options->backend < ANYIR_BACKEND_AUTO || options->backend > ANYIR_BACKEND_EXECUTORCH)
        throw anyir::Error(anyir::ErrorCode::InvalidArgument, "unknown backend " + std::to_string(options->backend));
      o.backend = static_cast<anyir::Backend>(options->backend);
      o.device = options->device ? options->device : "";
      o.threads = options->threads;
      o.tile = options->tile;
      o.overlap = options->overlap;
      o.memory_limit_mb = options->memory_limit_mb;
    }
    *out = new anyir_restorer{anyir::Restorer(path, o)};
  });
}

void anyir_close(anyir_restorer* r) { delete r; }

int anyir_restore_u8(const anyir_restorer* r, const uint8_t* src, int width, int height, size_t src_stride,
                     uint8_t* dst, size_t dst_stride) {
  if (!r) return null_arg("restorer");
  return guarded([&] { r->r.restore_into(src, width, height, src_stride, dst, dst_stride); });
}

int anyir_restore_f32(const anyir_restorer* r, const float* src, int width, int height, size_t src_stride, float* dst,
                      size_t dst_stride) {
  if (!r) return null_arg("restorer");
  return guarded([&] { r->r.restore_into(src, width, height, src_stride, dst, dst_stride); });
}

int anyir_size_multiple(const anyir_restorer* r) { return r ? r->r.size_multiple() : -1; }

namespace {
// a NUL-terminated copy of v into buf (truncated to buf_size - 1); returns v's length
int copy_out(const std::string& v, char* buf, size_t buf_size) {
  if (buf && buf_size) {
    const size_t n = std::min(v.size(), buf_size - 1);
    std::memcpy(buf, v.data(), n);
    buf[n] = '\0';
  }
  return static_cast<int>(v.size());
}
}  // namespace

int anyir_metadata(const anyir_restorer* r, const char* key, char* buf, size_t buf_size) {
  if (!r || !key) return -1;
  const std::string v = r->r.metadata(key);
  bool present = !v.empty();
  if (!present) {
    for (const auto& k : r->r.metadata_keys())
      if (k == key || k == std::string(anyir::detail::keys::kPrefix) + key) present = true;
  }
  if (!present) return -1;
  return copy_out(v, buf, buf_size);
}

int anyir_warning_count(const anyir_restorer* r) { return r ? static_cast<int>(r->r.warnings().size()) : -1; }

int anyir_warning(const anyir_restorer* r, int i, char* buf, size_t buf_size) {
  if (!r) return -1;
  const auto w = r->r.warnings();
  if (i < 0 || static_cast<size_t>(i) >= w.size()) return -1;
  return copy_out(w[static_cast<size_t>(i)], buf, buf_size);
}

const char* anyir_last_error(void) { return g_last_error.c_str(); }

const char* anyir_version(void) {
  static const std::string v = anyir::Restorer::version();
  return v.c_str();
}

}  // extern "C"
