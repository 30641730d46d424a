// ExecuTorch engine: a .pte from `anyir-export --to executorch` (XNNPACK delegate) on ExecuTorch's
// C++ runtime (extension::Module), the runtime an Android or iOS app links.  Batch 1 per call;
// either one method "forward" for H and W up to the bound the program was built for
// (anyir_edge.max_side: the Restorer tiles larger images) or, built with --sizes, one static
// method per size (anyir_edge.sizes; the sizes are read from the methods themselves, and the
// Restorer tiles images of other sizes with the largest square one).  Threads: ExecuTorch's own process-wide pool (one per core; the wheel ships no
// header to resize it, so Options::threads is not applied here).  Metadata from the program's constant method "anyir_edge_metadata", which
// returns the key/value pairs as UTF-8 JSON in a uint8 tensor (anyir_edge/artifact.py).
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine.hpp"

namespace anyir {
namespace detail {
namespace {

using executorch::extension::Module;
using executorch::runtime::Error;

constexpr const char* kMetadataMethod = "anyir_edge_metadata";

std::string error_text(Error e) { return "ExecuTorch error " + std::to_string(static_cast<int>(e)); }

// The flat JSON object of string pairs the exporter writes (keys sorted, values strings).
std::map<std::string, std::string> parse_flat_json(const std::string& s, const std::string& path) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  auto skip = [&] { while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i; };
  auto bad = [&]() { fail(ErrorCode::Model, path + ": its " + kMetadataMethod + " method does not return anyir-edge metadata"); };
  auto str = [&]() {
    skip();
    if (i >= s.size() || s[i] != '"') bad();
    std::string v;
    for (++i; i < s.size() && s[i] != '"'; ++i) {
      if (s[i] != '\\') { v += s[i]; continue; }
      if (++i >= s.size()) bad();
      switch (s[i]) {
        case 'n': v += '\n'; break;
        case 't': v += '\t'; break;
        case 'r': v += '\r'; break;
        case 'b': v += '\b'; break;
        case 'f': v += '\f'; break;
        case 'u': {  // \uXXXX: keep ASCII, replace the rest (metadata keys and numbers are ASCII)
          if (i + 4 >= s.size()) bad();
          const long cp = std::strtol(s.substr(i + 1, 4).c_str(), nullptr, 16);
          v += cp < 128 ? static_cast<char>(cp) : '?';
          i += 4;
          break;
        }
        default: v += s[i];
      }
    }
    if (i >= s.size()) bad();
    ++i;
    return v;
  };
  skip();
  if (i >= s.size() || s[i] != '{') bad();
  ++i;
  skip();
  if (i < s.size() && s[i] == '}') return out;
  while (true) {
    std::string k = str();
    skip();
    if (i >= s.size() || s[i] != ':') bad();
    ++i;
    out[k] = str();
    skip();
    if (i < s.size() && s[i] == ',') { ++i; continue; }
    if (i < s.size() && s[i] == '}') break;
    bad();
  }
  return out;
}

class EtEngine final : public Engine {
 public:
  explicit EtEngine(const EngineArgs& a) : path_(a.path) {
    if (!a.device.empty() && a.device != "cpu" && a.device != "CPU")
      fail(ErrorCode::Unsupported, "the executorch backend runs on the CPU (XNNPACK), not on " + a.device);
    module_.reset(new Module(path_, Module::LoadMode::Mmap));
    auto names = module_->method_names();
    if (!names.ok()) fail(ErrorCode::Model, path_ + ": ExecuTorch cannot load it (" + error_text(names.error()) + ")");
    if (names->count(kMetadataMethod)) {
      auto md = module_->execute(kMetadataMethod);
      if (!md.ok() || md->empty() || !(*md)[0].isTensor()) fail(ErrorCode::Model, path_ + ": unreadable metadata method");
      const auto t = (*md)[0].toTensor();
      metadata = parse_flat_json(std::string(t.const_data_ptr<char>(), static_cast<size_t>(t.numel())), path_);
    }
    // one dynamic "forward", or one static method per size (then every other method is one)
    std::vector<std::string> entries;
    if (names->count("forward")) {
      entries.push_back("forward");
    } else {
      for (const auto& n : *names)
        if (n != kMetadataMethod) entries.push_back(n);
    }
    if (entries.empty()) fail(ErrorCode::Model, path_ + ": the program has no 'forward' method and no method per size");
    for (const auto& name : entries) {
      const std::string where = name == "forward" ? path_ : path_ + " (method '" + name + "')";
      const Error e = module_->load_method(name);
      if (e != Error::Ok) fail(ErrorCode::Engine, where + ": ExecuTorch cannot load it (" + error_text(e) + ")");
      auto mm = module_->method_meta(name);
      if (!mm.ok() || mm->num_inputs() != 1 || mm->num_outputs() != 1)
        fail(ErrorCode::Model, where + ": not an AnyIR restoration program (expected 1 input and 1 output)");
      auto in = mm->input_tensor_meta(0);
      if (!in.ok() || in->scalar_type() != executorch::aten::ScalarType::Float || in->sizes().size() != 4 ||
          in->sizes()[1] != 3 || in->sizes()[0] != 1)
        fail(ErrorCode::Model, where + ": not an AnyIR restoration program (input is not float32 [1, 3, H, W])");
      if (name != "forward") by_size_[{static_cast<int>(in->sizes()[2]), static_cast<int>(in->sizes()[3])}] = name;
    }
    if (!by_size_.empty()) {
      int m = 8;
      const auto sm = metadata.find(keys::kSizeMultiple);
      if (sm != metadata.end()) m = std::max(1, std::atoi(sm->second.c_str()));
      for (const auto& kv : by_size_)
        if (kv.first.first % m || kv.first.second % m)
          fail(ErrorCode::Model, path_ + ": method '" + kv.second + "' takes " + std::to_string(kv.first.first) + "x" +
                                     std::to_string(kv.first.second) + ", not a multiple of its size multiple " +
                                     std::to_string(m));
      const auto named = metadata.find(keys::kSizes);
      if (named != metadata.end() && !same_sizes(named->second))
        fail(ErrorCode::Model, path_ + ": its metadata name sizes " + named->second + " but its methods take " +
                                   sizes_text() + ": the file was altered after export");
      return;
    }
    const auto it = metadata.find(keys::kMaxSide);
    if (it != metadata.end()) {  // a program from elsewhere has none: ExecuTorch checks its sizes
      char* end = nullptr;
      const long v = std::strtol(it->second.c_str(), &end, 10);
      if (end == it->second.c_str() || *end != '\0' || v < 1 || v > 1 << 20)
        fail(ErrorCode::Model, path_ + ": bad anyir_edge.max_side metadata '" + it->second + "'");
      max_side_ = static_cast<int>(v);
    }
  }

  void run(const float* x, int h, int w, std::vector<float>& y) override {
    if (max_side_ > 0 && (h > max_side_ || w > max_side_))
      fail(ErrorCode::Image, path_ + ": built for H and W up to " + std::to_string(max_side_) + ", got " +
                                 std::to_string(h) + "x" + std::to_string(w));
    std::string method = "forward";
    if (!by_size_.empty()) {
      const auto it = by_size_.find({h, w});
      if (it == by_size_.end())
        fail(ErrorCode::Image, path_ + ": built for " + sizes_text() + " only, got " + std::to_string(h) + "x" +
                                   std::to_string(w));
      method = it->second;
    }
    auto in = executorch::extension::from_blob(const_cast<float*>(x), {1, 3, h, w});
    auto out = module_->execute(method, in);
    if (!out.ok() || out->empty() || !(*out)[0].isTensor())
      fail(ErrorCode::Engine, path_ + ": ExecuTorch inference failed (" +
                                  (out.ok() ? std::string("no tensor output") : error_text(out.error())) + ")");
    const auto t = (*out)[0].toTensor();
    const float* p = t.const_data_ptr<float>();
    y.assign(p, p + t.numel());
  }

  int max_side() const override { return max_side_; }
  std::vector<std::pair<int, int>> sizes() const override {
    std::vector<std::pair<int, int>> out;
    for (const auto& kv : by_size_) out.push_back(kv.first);
    return out;
  }
  std::string kind() const override { return "executorch"; }
  std::string describe() const override {
    return "executorch (XNNPACK, its own thread pool" +
           (max_side_ > 0 ? ", H and W <= " + std::to_string(max_side_) : std::string()) +
           (by_size_.empty() ? std::string() : ", sizes " + sizes_text()) + ")";
  }
  double bytes_per_pixel_per_dim() const override { return 150.0; }

 private:
  std::string path_;
  int max_side_ = 0;
  std::map<std::pair<int, int>, std::string> by_size_;  // (H, W) -> its static method (a program built with --sizes)
  std::unique_ptr<Module> module_;

  // whether anyir_edge.sizes ("32x32,24x40", any order, repeats allowed) names exactly the methods' sizes
  bool same_sizes(const std::string& text) const {
    std::set<std::pair<int, int>> listed;
    size_t i = 0;
    while (i <= text.size()) {
      size_t j = text.find(',', i);
      if (j == std::string::npos) j = text.size();
      const std::string part = text.substr(i, j - i);
      const size_t x = part.find('x');
      if (x == std::string::npos || x == 0 || x + 1 == part.size() ||
          part.find_first_not_of("0123456789x") != std::string::npos)
        fail(ErrorCode::Model, path_ + ": bad anyir_edge.sizes metadata '" + text + "'");
      listed.insert({std::atoi(part.substr(0, x).c_str()), std::atoi(part.substr(x + 1).c_str())});
      i = j + 1;
    }
    std::set<std::pair<int, int>> found;
    for (const auto& kv : by_size_) found.insert(kv.first);
    return listed == found;
  }

  std::string sizes_text() const {  // anyir_edge.sizes' form: "24x40,32x32"
    std::string s;
    for (const auto& kv : by_size_)
      s += (s.empty() ? "" : ",") + std::to_string(kv.first.first) + "x" + std::to_string(kv.first.second);
    return s;
  }
};

}  // namespace

std::unique_ptr<Engine> make_executorch(const EngineArgs& args) { return std::unique_ptr<Engine>(new EtEngine(args)); }

}  // namespace detail
}  // namespace anyir
