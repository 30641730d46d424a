// Internal: the engine interface behind anyir::Restorer and the pure-C++ image plumbing
// (padding, tiling, blending) that mirrors anyir_edge/runtime/image.py line for line.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "anyir/restorer.hpp"
#include "metadata_keys.hpp"

namespace anyir {
namespace detail {

constexpr const char* kMetaPrefix = keys::kPrefix;

[[noreturn]] void fail(ErrorCode code, const std::string& message);

// "" when the parity certificate beside the engine describes it (or there is none); else a
// one-line warning (certificate.cpp)
std::string certificate_warning(const std::string& engine_path);

// One engine: runs the network *without* padding on float32 NCHW RGB (batch 1) whose H and W
// are multiples of size_multiple; returns the same shape.  Calls are serialised by Restorer.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual void run(const float* x, int h, int w, std::vector<float>& y) = 0;
  virtual std::string kind() const = 0;
  virtual std::string describe() const = 0;
  // Peak activation bytes per input pixel per unit of model width (backends.py values).
  virtual double bytes_per_pixel_per_dim() const = 0;
  // The largest padded H and W the engine takes (0: any); the Restorer tiles larger images.
  virtual int max_side() const { return 0; }
  // The only padded (H, W) the engine takes (empty: any); the Restorer tiles other sizes.
  virtual std::vector<std::pair<int, int>> sizes() const { return {}; }
  std::map<std::string, std::string> metadata;  // full keys, "anyir_edge.size_multiple" etc.
};

struct EngineArgs {
  std::string path;
  std::string device;
  int threads = 1;
};

#ifdef ANYIR_WITH_ONNXRUNTIME
std::unique_ptr<Engine> make_onnxruntime(const EngineArgs& args);
#endif
#ifdef ANYIR_WITH_OPENVINO
std::unique_ptr<Engine> make_openvino(const EngineArgs& args);
#endif
#ifdef ANYIR_WITH_TENSORRT
std::unique_ptr<Engine> make_tensorrt(const EngineArgs& args);
#endif
#ifdef ANYIR_WITH_EXECUTORCH
std::unique_ptr<Engine> make_executorch(const EngineArgs& args);
#endif

// ---- image.py twins (exposed for the unit tests)
// (C, H, W) float planes -> padded to multiples of `multiple` (bottom/right, rows first;
// reflect, edge replication for a side not longer than its pad).
std::vector<float> pad_to_multiple(const float* x, int c, int h, int w, int multiple, int* ph, int* pw);
std::vector<int> tile_starts(int n, int tile, int overlap);
std::vector<float> ramp_weights(int start, int length, int n, int overlap);
int auto_tile(long long pixels, double bytes_per_pixel, long long budget, int multiple, int overlap);
int physical_cores();
double config_number(const std::string& json, const std::string& key, double fallback);

}  // namespace detail
}  // namespace anyir
