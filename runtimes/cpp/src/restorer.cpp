// anyir::Restorer: the Python runtime's pipeline (anyir_edge/runtime/__init__.py, image.py) in C++.
// Float arithmetic follows numpy's order step by step (float32 everywhere numpy uses float32,
// float64 where it uses float64; compiled with -ffp-contract=off) so results match bit for bit
// given the same engine output.
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "anyir/restorer.hpp"
#include "engine.hpp"

#ifndef ANYIR_VERSION
#define ANYIR_VERSION "0.1.0"
#endif

namespace anyir {
namespace detail {

void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

std::vector<float> pad_to_multiple(const float* x, int c, int h, int w, int multiple, int* out_h, int* out_w) {
  const int ph = ((-h) % multiple + multiple) % multiple, pw = ((-w) % multiple + multiple) % multiple;
  const int H = h + ph, W = w + pw;
  *out_h = H;
  *out_w = W;
  std::vector<float> y(static_cast<size_t>(c) * H * W);
  // rows: reflect (ph < h) or edge (ph >= h); then columns of the row-padded planes
  auto src_row = [&](int r) { return r < h ? r : (ph < h ? 2 * (h - 1) - r : h - 1); };
  auto src_col = [&](int q) { return q < w ? q : (pw < w ? 2 * (w - 1) - q : w - 1); };
  for (int ch = 0; ch < c; ++ch) {
    for (int r = 0; r < H; ++r) {
      const float* s = x + (static_cast<size_t>(ch) * h + src_row(r)) * w;
      float* d = y.data() + (static_cast<size_t>(ch) * H + r) * W;
      std::memcpy(d, s, sizeof(float) * w);
      for (int q = w; q < W; ++q) d[q] = s[src_col(q)];
    }
  }
  return y;
}

std::vector<int> tile_starts(int n, int tile, int overlap) {
  if (n <= tile) return {0};
  const int step = tile - overlap;
  std::vector<int> s;
  for (int v = 0; v < n - tile; v += step) s.push_back(v);
  s.push_back(n - tile);
  return s;
}

std::vector<float> ramp_weights(int start, int length, int n, int overlap) {
  std::vector<float> w(length, 1.0f);
  const int ov = std::min(overlap, length / 2);
  if (ov <= 0) return w;
  std::vector<float> r(ov);
  for (int k = 0; k < ov; ++k) r[k] = static_cast<float>(0.5 - 0.5 * std::cos(M_PI * (k + 0.5) / ov));
  if (start > 0)
    for (int k = 0; k < ov; ++k) w[k] = r[k];
  if (start + length < n)
    for (int k = 0; k < ov; ++k) w[length - ov + k] = std::min(w[length - ov + k], r[ov - 1 - k]);
  return w;
}

int auto_tile(long long pixels, double bytes_per_pixel, long long budget, int multiple, int overlap) {
  (void)pixels;
  const int side = static_cast<int>(std::sqrt(static_cast<double>(std::max(budget, 1LL)) / bytes_per_pixel)) /
                   multiple * multiple;
  const int floor_ = std::max(64, (2 * overlap + multiple) / multiple * multiple + multiple);
  return std::max(side, floor_);
}

int physical_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int avail = 0;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) avail = CPU_COUNT(&set);
  if (avail <= 0) avail = 1;
  std::ifstream f("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> pairs;
  std::string line, phys = "0";
  auto trim = [](std::string s) {
    const auto a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
    return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
  };
  while (std::getline(f, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = trim(line.substr(0, colon)), val = trim(line.substr(colon + 1));
    if (key == "physical id") phys = val;
    else if (key == "core id") pairs.insert({phys, val});
  }
  const int cores = pairs.empty() ? avail : static_cast<int>(pairs.size());
  return std::max(1, std::min(cores, avail));
}

double config_number(const std::string& json, const std::string& key, double fallback) {
  const std::string quoted = "\"" + key + "\"";
  size_t pos = 0;
  while ((pos = json.find(quoted, pos)) != std::string::npos) {
    size_t p = pos + quoted.size();
    while (p < json.size() && std::isspace(static_cast<unsigned char>(json[p]))) ++p;
    if (p < json.size() && json[p] == ':') {
      const char* begin = json.c_str() + p + 1;
      char* end = nullptr;
      const double v = std::strtod(begin, &end);
      if (end != begin) return v;
      return fallback;
    }
    pos = p;
  }
  return fallback;
}

static std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

static std::string suffix_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  return lower(path.substr(dot));
}

static std::string stem_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  const auto dot = base.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

}  // namespace detail

using detail::fail;
namespace keys = detail::keys;

struct Restorer::Impl {
  std::unique_ptr<detail::Engine> engine;
  mutable std::mutex lock;
  std::string path, name;
  int multiple = 8;
  int tile = kAutoTile, overlap = 32;
  long long memory_limit = 0;
  double bytes_per_pixel = 0;
  std::vector<std::string> warnings;

  std::string meta(const std::string& key) const {
    const auto it = engine->metadata.find(key);
    return it == engine->metadata.end() ? std::string() : it->second;
  }

  long long estimate_bytes(int h, int w) const {
    const long long ph = (h + multiple - 1) / multiple * static_cast<long long>(multiple);
    const long long pw = (w + multiple - 1) / multiple * static_cast<long long>(multiple);
    return static_cast<long long>(bytes_per_pixel * static_cast<double>(ph) * static_cast<double>(pw));
  }

  // (tile, overlap) on an engine built for fixed sizes (ExecuTorch --sizes): whole when the image
  // pads to one of them, else tiles of a square one (Restorer._plan_fixed)
  std::pair<int, int> plan_fixed(int h, int w) const {
    const int m = multiple;
    const auto sizes = engine->sizes();
    const int ph = (h + m - 1) / m * m, pw = (w + m - 1) / m * m;
    int t = tile, ov = overlap;
    std::string listed;
    std::vector<int> squares;
    bool whole = false;
    for (const auto& s : sizes) {
      listed += (listed.empty() ? "" : ", ") + std::to_string(s.first) + "x" + std::to_string(s.second);
      if (s.first == s.second) squares.push_back(s.first);
      whole = whole || (s.first == ph && s.second == pw);
    }
    const std::string image = "image " + std::to_string(w) + "x" + std::to_string(h);
    if (whole && (t == kAutoTile || t == kNoTile || (h <= t && w <= t))) return {0, ov};
    if (t == kNoTile)
      fail(ErrorCode::Image, image + " does not pad to a size this engine was built for (" + listed +
                                 ") and tiling is off; allow tiling or re-export with --sizes including it");
    const int side = std::min(ph, pw);
    std::vector<int> usable;
    for (int s : squares)
      if (s <= side) usable.push_back(s);
    if (t == kAutoTile) {
      if (usable.empty())
        fail(ErrorCode::Image, image + " does not pad to a size this engine was built for (" + listed +
                                   ") and is smaller than its square sizes, so it cannot be tiled either; re-export "
                                   "with --sizes " + std::to_string(ph) + "x" + std::to_string(pw));
      t = *std::max_element(usable.begin(), usable.end());
      ov = std::min(ov, t / 4);
    } else {
      t = (t + m - 1) / m * m;
      if (std::find(usable.begin(), usable.end(), t) == usable.end()) {
        std::string names;
        for (int s : usable) names += (names.empty() ? "" : ", ") + std::to_string(s);
        fail(ErrorCode::InvalidArgument, "tile " + std::to_string(t) + ": this engine runs only " + listed + "; for a " +
                                             std::to_string(w) + "x" + std::to_string(h) +
                                             " image the tile must be one of its square sizes no larger than the "
                                             "image (" + (names.empty() ? "none" : names) + ")");
      }
    }
    if (ov * 2 >= t)
      fail(ErrorCode::InvalidArgument,
           "overlap " + std::to_string(ov) + " must be less than half the tile size " + std::to_string(t));
    return {t, ov};
  }

  std::pair<int, int> plan(int h, int w) const {
    if (!engine->sizes().empty()) return plan_fixed(h, w);
    const int m = multiple;
    int t = tile;
    int ov = overlap;
    const int bound = engine->max_side();  // an engine built for H, W <= bound (ExecuTorch)
    const int ph = (h + m - 1) / m * m, pw = (w + m - 1) / m * m;
    if (bound > 0 && t > bound)
      fail(ErrorCode::InvalidArgument, "tile " + std::to_string(t) + " is larger than the " + std::to_string(bound) +
                                           " pixels this engine was built for");
    if (t == kAutoTile) {
      if (estimate_bytes(h, w) <= memory_limit && !(bound > 0 && std::max(ph, pw) > bound)) return {0, ov};
      t = detail::auto_tile(static_cast<long long>(h) * w, bytes_per_pixel, memory_limit, m, ov);
      if (bound > 0 && t > bound / m * m) {  // the engine's bound decides; a small one takes a smaller overlap
        t = bound / m * m;
        ov = std::min(ov, t / 4);
      }
    } else if (t == kNoTile) {
      if (bound > 0 && std::max(ph, pw) > bound)
        fail(ErrorCode::Image, "image " + std::to_string(w) + "x" + std::to_string(h) + " is larger than the " +
                                   std::to_string(bound) + " pixels this engine was built for and tiling is off");
      const long long need = estimate_bytes(h, w);
      if (need > memory_limit) {
        std::ostringstream s;
        s << "image too large for the memory limit without tiling (" << w << "x" << h << " needs ~"
          << std::llround(need / 1048576.0) << " MB, limit " << std::llround(memory_limit / 1048576.0)
          << " MB); allow tiling (tile N) or raise the limit";
        fail(ErrorCode::Image, s.str());
      }
      return {0, overlap};
    }
    t = (t + m - 1) / m * m;
    if (ov * 2 >= t)
      fail(ErrorCode::InvalidArgument,
           "overlap " + std::to_string(ov) + " must be less than half the tile size " + std::to_string(t));
    if (h <= t && w <= t) return {0, ov};
    return {t, ov};
  }

  // (3, h, w) -> (3, h, w): pad, run, crop (Restorer.forward)
  std::vector<float> forward(const float* x, int h, int w) const {
    int H = 0, W = 0;
    std::vector<float> padded = detail::pad_to_multiple(x, 3, h, w, multiple, &H, &W);
    std::vector<float> y;
    {
      std::lock_guard<std::mutex> g(lock);
      engine->run(padded.data(), H, W, y);
    }
    if (y.size() != static_cast<size_t>(3) * H * W)
      fail(ErrorCode::Engine, "the engine returned " + std::to_string(y.size()) + " values for a 3x" +
                                  std::to_string(H) + "x" + std::to_string(W) + " input");
    if (H == h && W == w) return y;
    std::vector<float> out(static_cast<size_t>(3) * h * w);
    for (int c = 0; c < 3; ++c)
      for (int r = 0; r < h; ++r)
        std::memcpy(&out[(static_cast<size_t>(c) * h + r) * w], &y[(static_cast<size_t>(c) * H + r) * W],
                    sizeof(float) * w);
    return out;
  }

  std::vector<float> tiled(const std::vector<float>& rgb, int h, int w, int t, int ov) const {
    const size_t hw = static_cast<size_t>(h) * w;
    std::vector<float> out(3 * hw, 0.0f), wsum(hw, 0.0f);
    const int th = std::min(t, h), tw = std::min(t, w);
    std::vector<float> patch(static_cast<size_t>(3) * th * tw), wt(static_cast<size_t>(th) * tw);
    for (int y0 : detail::tile_starts(h, t, ov)) {
      const std::vector<float> wy = detail::ramp_weights(y0, th, h, ov);
      for (int x0 : detail::tile_starts(w, t, ov)) {
        const std::vector<float> wx = detail::ramp_weights(x0, tw, w, ov);
        for (int c = 0; c < 3; ++c)
          for (int i = 0; i < th; ++i)
            std::memcpy(&patch[(static_cast<size_t>(c) * th + i) * tw], &rgb[c * hw + (y0 + i) * static_cast<size_t>(w) + x0],
                        sizeof(float) * tw);
        const std::vector<float> res = forward(patch.data(), th, tw);
        for (int i = 0; i < th; ++i)
          for (int j = 0; j < tw; ++j) wt[static_cast<size_t>(i) * tw + j] = wy[i] * wx[j];
        for (int c = 0; c < 3; ++c)
          for (int i = 0; i < th; ++i) {
            float* o = &out[c * hw + (y0 + i) * static_cast<size_t>(w) + x0];
            const float* r = &res[(static_cast<size_t>(c) * th + i) * tw];
            const float* q = &wt[static_cast<size_t>(i) * tw];
            for (int j = 0; j < tw; ++j) {
              const float prod = r[j] * q[j];
              o[j] = o[j] + prod;
            }
          }
        for (int i = 0; i < th; ++i) {
          float* s = &wsum[(y0 + i) * static_cast<size_t>(w) + x0];
          const float* q = &wt[static_cast<size_t>(i) * tw];
          for (int j = 0; j < tw; ++j) s[j] = s[j] + q[j];
        }
      }
    }
    for (int c = 0; c < 3; ++c)
      for (size_t k = 0; k < hw; ++k) out[c * hw + k] = out[c * hw + k] / wsum[k];
    return out;
  }

  std::vector<float> run_planes(const std::vector<float>& rgb, int h, int w) const {
    const auto tp = plan(h, w);
    return tp.first == 0 ? forward(rgb.data(), h, w) : tiled(rgb, h, w, tp.first, tp.second);
  }
};

static void check_image(const void* src, int width, int height, size_t stride, size_t elem) {
  if (width <= 0 || height <= 0) {
    if (width < 0 || height < 0)
      fail(ErrorCode::Image, "negative image size (" + std::to_string(height) + "x" + std::to_string(width) + ")");
    fail(ErrorCode::Image, "zero-size image (" + std::to_string(height) + "x" + std::to_string(width) + ")");
  }
  if (!src) fail(ErrorCode::InvalidArgument, "null image buffer");
  if (stride != 0 && stride < 3 * elem * static_cast<size_t>(width))
    fail(ErrorCode::InvalidArgument, "row stride " + std::to_string(stride) + " bytes is less than 3 * width * " +
                                         std::to_string(elem) + " = " + std::to_string(3 * elem * width));
}

Restorer::Restorer(const std::string& model_path, const Options& options) : impl_(new Impl) {
  Impl& d = *impl_;
  if (options.overlap < 0) fail(ErrorCode::InvalidArgument, "overlap must be >= 0, got " + std::to_string(options.overlap));
  if (options.tile < kAutoTile) fail(ErrorCode::InvalidArgument, "tile must be >= 0, got " + std::to_string(options.tile));
  if (options.threads < 0) fail(ErrorCode::InvalidArgument, "threads must be >= 0, got " + std::to_string(options.threads));
  if (model_path.empty()) fail(ErrorCode::Model, "no model path given");
  Backend kind = options.backend;
  const std::string suffix = detail::suffix_of(model_path);
  if (kind == Backend::Auto) {
    if (suffix == ".onnx") kind = Backend::OnnxRuntime;
    else if (suffix == ".xml") kind = Backend::OpenVINO;
    else if (suffix == ".engine" || suffix == ".plan") kind = Backend::TensorRT;
    else if (suffix == ".pte") kind = Backend::ExecuTorch;
    else
      fail(ErrorCode::Model, model_path + ": unknown model type (expected .onnx, OpenVINO .xml, TensorRT .engine or "
                                          "ExecuTorch .pte); "
                                          "export one with: anyir-export --to onnx --model ...");
  }
  {
    std::ifstream probe(model_path, std::ios::binary);
    if (!probe) fail(ErrorCode::Model, model_path + ": no such model file");
  }
  detail::EngineArgs args{model_path, options.device, options.threads > 0 ? options.threads : detail::physical_cores()};
  switch (kind) {
    case Backend::OnnxRuntime:
      if (suffix != ".onnx") fail(ErrorCode::Model, model_path + ": the onnxruntime backend needs a .onnx file");
#ifdef ANYIR_WITH_ONNXRUNTIME
      d.engine = detail::make_onnxruntime(args);
#else
      fail(ErrorCode::Unsupported, "this anyir_runtime was built without ONNX Runtime");
#endif
      break;
    case Backend::OpenVINO:
      if (suffix != ".xml" && suffix != ".onnx")
        fail(ErrorCode::Model, model_path + ": the openvino backend needs a .xml (or .onnx) file");
#ifdef ANYIR_WITH_OPENVINO
      d.engine = detail::make_openvino(args);
#else
      fail(ErrorCode::Unsupported, "this anyir_runtime was built without OpenVINO (its CMake config was not found)");
#endif
      break;
    case Backend::TensorRT:
#ifdef ANYIR_WITH_TENSORRT
      d.engine = detail::make_tensorrt(args);
#else
      fail(ErrorCode::Unsupported, "this anyir_runtime was built without TensorRT (NvInfer.h / libnvinfer not found at build time)");
#endif
      break;
    case Backend::ExecuTorch:
      if (suffix != ".pte") fail(ErrorCode::Model, model_path + ": the executorch backend needs a .pte file");
#ifdef ANYIR_WITH_EXECUTORCH
      d.engine = detail::make_executorch(args);
#else
      fail(ErrorCode::Unsupported, "this anyir_runtime was built without ExecuTorch (its CMake config was not found)");
#endif
      break;
    default:
      fail(ErrorCode::InvalidArgument, "unknown backend");
  }
  const std::string layout = d.meta(keys::kLayout);
  if (!layout.empty() && layout != "NCHW")
    fail(ErrorCode::Model, model_path + ": model layout " + layout + " is not supported (expected NCHW)");
  const std::string sm = d.meta(keys::kSizeMultiple);
  d.multiple = 8;
  if (!sm.empty()) {
    char* end = nullptr;
    const long v = std::strtol(sm.c_str(), &end, 10);
    if (end == sm.c_str() || *end != '\0' || v < 1 || v > 4096)
      fail(ErrorCode::Model, model_path + ": bad anyir_edge.size_multiple metadata '" + sm + "'");
    d.multiple = static_cast<int>(v);
  }
  d.path = model_path;
  d.name = d.meta(keys::kName);
  if (d.name.empty()) d.name = detail::stem_of(model_path);
  d.tile = options.tile;
  d.overlap = options.overlap;
  double mb = options.memory_limit_mb;
  if (!(mb > 0)) {
    const char* env = std::getenv("ANYIR_MEMORY_LIMIT_MB");
    mb = env && *env ? std::strtod(env, nullptr) : 1024.0;
  }
  d.memory_limit = static_cast<long long>(mb * 1048576.0);
  if (d.memory_limit <= 0) d.memory_limit = static_cast<long long>(1024.0 * 1048576.0);
  d.bytes_per_pixel =
      d.engine->bytes_per_pixel_per_dim() * detail::config_number(d.meta(keys::kConfig), "dim", 32.0);
  const std::string cert = detail::certificate_warning(model_path);
  if (!cert.empty()) d.warnings.push_back(cert);
}

std::vector<std::string> Restorer::warnings() const { return impl_->warnings; }

Restorer::~Restorer() = default;
Restorer::Restorer(Restorer&&) noexcept = default;
Restorer& Restorer::operator=(Restorer&&) noexcept = default;

void Restorer::restore_into(const std::uint8_t* rgb, int width, int height, std::size_t stride, std::uint8_t* dst,
                            std::size_t dst_stride) const {
  check_image(rgb, width, height, stride, 1);
  check_image(dst, width, height, dst_stride, 1);
  if (!stride) stride = 3 * static_cast<size_t>(width);
  if (!dst_stride) dst_stride = 3 * static_cast<size_t>(width);
  const size_t hw = static_cast<size_t>(width) * height;
  std::vector<float> planes(3 * hw);
  const float scale = static_cast<float>(1.0 / 255.0);
  for (int y = 0; y < height; ++y) {
    const std::uint8_t* row = rgb + y * stride;
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) planes[c * hw + static_cast<size_t>(y) * width + x] = static_cast<float>(row[3 * x + c]) * scale;
  }
  const std::vector<float> out = impl_->run_planes(planes, height, width);
  for (int y = 0; y < height; ++y) {
    std::uint8_t* row = dst + y * dst_stride;
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        float v = out[c * hw + static_cast<size_t>(y) * width + x];
        v = std::min(std::max(v, 0.0f), 1.0f) * 255.0f;  // np.clip, then float32 * 255
        row[3 * x + c] = static_cast<std::uint8_t>(std::nearbyint(v));  // np.rint: half to even
      }
  }
}

void Restorer::restore_into(const float* rgb, int width, int height, std::size_t stride, float* dst,
                            std::size_t dst_stride) const {
  check_image(rgb, width, height, stride, sizeof(float));
  check_image(dst, width, height, dst_stride, sizeof(float));
  if (!stride) stride = 3 * sizeof(float) * width;
  if (!dst_stride) dst_stride = 3 * sizeof(float) * width;
  const size_t hw = static_cast<size_t>(width) * height;
  std::vector<float> planes(3 * hw);
  for (int y = 0; y < height; ++y) {
    const float* row = reinterpret_cast<const float*>(reinterpret_cast<const char*>(rgb) + y * stride);
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        const float v = row[3 * x + c];
        if (!std::isfinite(v)) fail(ErrorCode::Image, "image contains NaN or infinite values");
        planes[c * hw + static_cast<size_t>(y) * width + x] = std::min(std::max(v, 0.0f), 1.0f);
      }
  }
  const std::vector<float> out = impl_->run_planes(planes, height, width);
  for (int y = 0; y < height; ++y) {
    float* row = reinterpret_cast<float*>(reinterpret_cast<char*>(dst) + y * dst_stride);
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) row[3 * x + c] = std::min(std::max(out[c * hw + static_cast<size_t>(y) * width + x], 0.0f), 1.0f);
  }
}

Image8 Restorer::restore(const std::uint8_t* rgb, int width, int height, std::size_t stride) const {
  check_image(rgb, width, height, stride, 1);
  Image8 img{width, height, std::vector<std::uint8_t>(3 * static_cast<size_t>(width) * height)};
  restore_into(rgb, width, height, stride, img.data.data(), 0);
  return img;
}

ImageF Restorer::restore(const float* rgb, int width, int height, std::size_t stride) const {
  check_image(rgb, width, height, stride, sizeof(float));
  ImageF img{width, height, std::vector<float>(3 * static_cast<size_t>(width) * height)};
  restore_into(rgb, width, height, stride, img.data.data(), 0);
  return img;
}

void Restorer::plan_tile(int width, int height, int* tile, int* overlap) const {
  if (width <= 0 || height <= 0)
    fail(ErrorCode::Image, "zero-size image (" + std::to_string(height) + "x" + std::to_string(width) + ")");
  const auto p = impl_->plan(height, width);
  if (tile) *tile = p.first;
  if (overlap) *overlap = p.second;
}

std::string Restorer::name() const { return impl_->name; }
std::string Restorer::backend_name() const { return impl_->engine->kind(); }
std::string Restorer::describe() const { return impl_->name + " on " + impl_->engine->describe(); }
int Restorer::size_multiple() const { return impl_->multiple; }

std::string Restorer::metadata(const std::string& key) const {
  const std::string v = impl_->meta(key);
  return v.empty() && key.rfind(detail::kMetaPrefix, 0) != 0 ? impl_->meta(detail::kMetaPrefix + key) : v;
}

std::vector<std::string> Restorer::metadata_keys() const {
  std::vector<std::string> keys;
  for (const auto& kv : impl_->engine->metadata) keys.push_back(kv.first);
  return keys;
}

std::string Restorer::version() { return ANYIR_VERSION; }

std::vector<std::string> Restorer::backends() {
  std::vector<std::string> b;
#ifdef ANYIR_WITH_ONNXRUNTIME
  b.push_back("onnxruntime");
#endif
#ifdef ANYIR_WITH_OPENVINO
  b.push_back("openvino");
#endif
#ifdef ANYIR_WITH_TENSORRT
  b.push_back("tensorrt");
#endif
#ifdef ANYIR_WITH_EXECUTORCH
  b.push_back("executorch");
#endif
  return b;
}

}  // namespace anyir
