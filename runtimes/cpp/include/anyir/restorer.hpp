// anyir/restorer.hpp - AnyIR image restoration in C++ (the C ABI is anyir/anyir.h).
//
//   anyir::Options opt;                        // backend from the suffix: .onnx / .xml / .engine
//   opt.threads = 4;
//   anyir::Restorer r("anyir-tiny.onnx", opt);
//   anyir::Image8 out = r.restore(rgb, width, height, stride_bytes);   // HxWx3 RGB, packed
//
// Behaviour is that of the Python runtime (anyir_edge.runtime.Restorer): the image is padded
// bottom/right to the model's size multiple (read from the model's metadata) with reflect
// padding (edge replication for a side not longer than its pad), rows first; large images are
// cut into overlapping tiles blended with a raised-cosine ramp; the tile size is chosen from
// a memory budget unless given.  8-bit input is scaled by 1/255, float input is clipped to
// [0, 1]; outputs are clipped to [0, 1] and 8-bit output is rounded half to even.
//
// Errors are anyir::Error exceptions with one-line messages.  A Restorer may be shared
// between threads (engine calls are serialised).  No framework types appear in this header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace anyir {

enum class Backend { Auto, OnnxRuntime, OpenVINO, TensorRT, ExecuTorch };

enum class ErrorCode {
  InvalidArgument = 1,  // bad option or argument (negative tile, null buffer, ...)
  Image = 2,            // unusable image (zero size, NaN, ...)
  Model = 3,            // missing, unreadable or wrong model file
  Engine = 4,           // the engine failed (cannot compile / run)
  Unsupported = 5,      // backend or device not built into this library
  Internal = 6,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

constexpr int kAutoTile = -1;  // tile from the memory budget (the Python default, tile=None)
constexpr int kNoTile = 0;     // never tile; an image over the memory budget is refused

struct Options {
  Backend backend = Backend::Auto;  // Auto: .onnx -> OnnxRuntime, .xml -> OpenVINO, .engine -> TensorRT
  std::string device;               // onnxruntime: auto|cpu|cuda[:N]|tensorrt; openvino: CPU|GPU ("" = default)
  int threads = 0;                  // intra-op threads; 0 = physical cores
  int tile = kAutoTile;             // kAutoTile, kNoTile or N pixels (rounded up to the size multiple)
  int overlap = 32;                 // pixels shared by neighbouring tiles
  double memory_limit_mb = 0;       // activation budget for auto tiling; 0 = $ANYIR_MEMORY_LIMIT_MB or 1024
};

// A packed HxWx3 RGB image (row stride = 3 * width elements).
template <class T>
struct Image {
  int width = 0;
  int height = 0;
  std::vector<T> data;
};
using Image8 = Image<std::uint8_t>;
using ImageF = Image<float>;

class Restorer {
 public:
  explicit Restorer(const std::string& model_path, const Options& options = Options());
  ~Restorer();
  Restorer(Restorer&&) noexcept;
  Restorer& operator=(Restorer&&) noexcept;
  Restorer(const Restorer&) = delete;
  Restorer& operator=(const Restorer&) = delete;

  // 8-bit RGB, `stride` bytes between rows (0 = packed, 3 * width).
  Image8 restore(const std::uint8_t* rgb, int width, int height, std::size_t stride = 0) const;
  // float RGB in [0, 1] (clipped), `stride` bytes between rows (0 = packed).
  ImageF restore(const float* rgb, int width, int height, std::size_t stride = 0) const;
  // The same, writing into caller memory (dst may not alias src).
  void restore_into(const std::uint8_t* rgb, int width, int height, std::size_t stride, std::uint8_t* dst,
                    std::size_t dst_stride) const;
  void restore_into(const float* rgb, int width, int height, std::size_t stride, float* dst,
                    std::size_t dst_stride) const;

  // (tile, overlap) the restorer will use for a width x height image; tile 0 = one whole-image run.
  void plan_tile(int width, int height, int* tile, int* overlap) const;

  std::string name() const;             // model name from the metadata (else the file stem)
  std::string backend_name() const;     // "onnxruntime", "openvino", "tensorrt"
  std::string describe() const;         // e.g. "anyir-tiny on onnxruntime (CPU, 4 threads)"
  int size_multiple() const;
  std::string metadata(const std::string& key) const;  // "anyir_edge.<key>" or <key>; "" if absent
  std::vector<std::string> metadata_keys() const;
  // one-line warnings found when the engine was opened (e.g. its parity certificate describes
  // another file); the engine still runs
  std::vector<std::string> warnings() const;

  static std::string version();                 // library version
  static std::vector<std::string> backends();   // backends compiled into this library

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace anyir
