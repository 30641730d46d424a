// ONNX Runtime engine through its C++ API, with the Python OnnxRuntimeBackend's session settings:
// graph optimisation ALL, intra-op threads = physical cores (or Options::threads), 1 inter-op
// thread, sequential execution, memory patterns off, CPU arena on; providers TensorRT > CUDA >
// CPU when present (a CPU-only onnxruntime runs on CPU).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <algorithm>
#include <cctype>
#include <mutex>
#include <sstream>

#include "engine.hpp"

namespace anyir {
namespace detail {
namespace {

std::string first_line(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  return line.size() > 200 ? line.substr(0, 200) : line;
}

Ort::Env& ort_env() {
  static std::once_flag once;
  static std::unique_ptr<Ort::Env> env;
  static std::string error;
  std::call_once(once, [] {
    const OrtApiBase* base = OrtGetApiBase();
    const OrtApi* api = base->GetApi(ORT_API_VERSION);
    if (!api) {
      error = std::string("the onnxruntime library (") + base->GetVersionString() +
              ") does not provide C API version " + std::to_string(ORT_API_VERSION) +
              " that anyir_runtime was compiled with; use an onnxruntime library at least as new as the headers";
      return;
    }
    Ort::InitApi(api);
    env.reset(new Ort::Env(ORT_LOGGING_LEVEL_ERROR, "anyir"));
  });
  if (!env) fail(ErrorCode::Engine, error);
  return *env;
}

class OrtEngine final : public Engine {
 public:
  explicit OrtEngine(const EngineArgs& a) : path_(a.path), threads_(a.threads) {
    Ort::Env& env = ort_env();
    try {
      Ort::SessionOptions so;
      so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
      so.SetIntraOpNumThreads(threads_);
      so.SetInterOpNumThreads(1);
      so.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
      so.SetLogSeverityLevel(3);
      so.DisableMemPattern();
      so.EnableCpuMemArena();
      choose_providers(so, a.device);
      session_.reset(new Ort::Session(env, path_.c_str(), so));
    } catch (const Ort::Exception& e) {
      fail(ErrorCode::Model, path_ + ": onnxruntime cannot load it (" + first_line(e.what()) + ")");
    }
    Ort::AllocatorWithDefaultOptions alloc;
    try {
      Ort::ModelMetadata md = session_->GetModelMetadata();
      for (auto& key : md.GetCustomMetadataMapKeysAllocated(alloc)) {
        auto value = md.LookupCustomMetadataMapAllocated(key.get(), alloc);
        metadata[key.get()] = value ? value.get() : "";
      }
    } catch (const Ort::Exception& e) {
      fail(ErrorCode::Model, path_ + ": cannot read its metadata (" + first_line(e.what()) + ")");
    }
    check_signature(alloc);
    if (metadata.count(keys::kFft) && metadata[keys::kFft] == "dft" && !providers_.empty() &&
        providers_.front() != "CPU")
      fail(ErrorCode::Model, path_ + ": this ONNX model keeps DFT ops (--fft dft), which the CUDA/TensorRT providers "
                                     "cannot run; export with --fft fold for GPUs");
  }

  void run(const float* x, int h, int w, std::vector<float>& y) override {
    const std::int64_t shape[4] = {1, 3, h, w};
    const size_t n = static_cast<size_t>(3) * h * w;
    try {
      Ort::MemoryInfo mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
      Ort::Value in = Ort::Value::CreateTensor<float>(mem, const_cast<float*>(x), n, shape, 4);
      const char* in_names[] = {input_name_.c_str()};
      const char* out_names[] = {output_name_.c_str()};
      std::vector<Ort::Value> out = session_->Run(Ort::RunOptions{nullptr}, in_names, &in, 1, out_names, 1);
      auto info = out.at(0).GetTensorTypeAndShapeInfo();
      const size_t count = info.GetElementCount();
      const float* p = out[0].GetTensorData<float>();
      y.assign(p, p + count);
    } catch (const Ort::Exception& e) {
      fail(ErrorCode::Engine, path_ + ": onnxruntime run failed (" + first_line(e.what()) + ")");
    }
  }

  std::string kind() const override { return "onnxruntime"; }
  std::string describe() const override {
    std::ostringstream s;
    s << "onnxruntime " << Ort::GetVersionString() << " (";
    for (size_t i = 0; i < providers_.size(); ++i) s << (i ? ", " : "") << providers_[i];
    s << ", " << threads_ << " threads)";
    return s.str();
  }
  double bytes_per_pixel_per_dim() const override { return 95.0; }

 private:
  void choose_providers(Ort::SessionOptions& so, const std::string& device) {
    std::string dev = device.empty() ? "auto" : device;
    std::transform(dev.begin(), dev.end(), dev.begin(), [](unsigned char c) { return std::tolower(c); });
    int dev_id = 0;
    const auto colon = dev.find(':');
    if (colon != std::string::npos) {
      dev_id = std::atoi(dev.c_str() + colon + 1);
      dev = dev.substr(0, colon);
    }
    const std::vector<std::string> avail = Ort::GetAvailableProviders();
    auto has = [&](const char* p) { return std::find(avail.begin(), avail.end(), p) != avail.end(); };
    std::vector<std::string> wanted;
    if (dev == "cpu") wanted = {"CPUExecutionProvider"};
    else if (dev == "cuda" || dev == "gpu") wanted = {"CUDAExecutionProvider", "CPUExecutionProvider"};
    else if (dev == "tensorrt" || dev == "trt" || dev == "auto")
      wanted = {"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"};
    else
      fail(ErrorCode::InvalidArgument, "unknown onnxruntime device '" + device + "'; expected auto, cpu, cuda[:N] or tensorrt");
    if (dev != "auto" && dev != "cpu" && !has(wanted[0].c_str())) {
      std::string list;
      for (const auto& p : avail) list += (list.empty() ? "" : ", ") + p;
      fail(ErrorCode::Unsupported, wanted[0] + " is not available in this onnxruntime build (available: " + list + ")");
    }
    for (const auto& p : wanted) {
      if (!has(p.c_str())) continue;
      if (p == "TensorrtExecutionProvider") {
        OrtTensorRTProviderOptions o{};
        o.device_id = dev_id;
        so.AppendExecutionProvider_TensorRT(o);
        providers_.push_back("TensorRT");
      } else if (p == "CUDAExecutionProvider") {
        OrtCUDAProviderOptions o{};
        o.device_id = dev_id;
        so.AppendExecutionProvider_CUDA(o);
        providers_.push_back("CUDA");
      } else {
        providers_.push_back("CPU");
      }
    }
    if (providers_.empty()) providers_.push_back("CPU");
  }

  void check_signature(Ort::AllocatorWithDefaultOptions& alloc) {
    if (session_->GetInputCount() != 1 || session_->GetOutputCount() != 1)
      fail(ErrorCode::Model, path_ + ": not an AnyIR restoration model (expected 1 input and 1 output, found " +
                                 std::to_string(session_->GetInputCount()) + " and " +
                                 std::to_string(session_->GetOutputCount()) + ")");
    input_name_ = session_->GetInputNameAllocated(0, alloc).get();
    output_name_ = session_->GetOutputNameAllocated(0, alloc).get();
    auto check = [&](Ort::TypeInfo ti, const std::string& what, const std::string& name) {
      if (ti.GetONNXType() != ONNX_TYPE_TENSOR)
        fail(ErrorCode::Model, path_ + ": not an AnyIR restoration model (" + what + " '" + name + "' is not a tensor)");
      auto t = ti.GetTensorTypeAndShapeInfo();
      const auto shape = t.GetShape();
      std::ostringstream s;
      s << "[";
      for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << (shape[i] < 0 ? std::string("?") : std::to_string(shape[i]));
      s << "]";
      if (t.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || shape.size() != 4 || (shape[1] != 3 && shape[1] >= 0))
        fail(ErrorCode::Model, path_ + ": not an AnyIR restoration model (" + what + " '" + name + "' is " +
                                   (t.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? "float32 " : "non-float32 ") +
                                   s.str() + ", expected float32 [N, 3, H, W])");
    };
    check(session_->GetInputTypeInfo(0), "input", input_name_);
    check(session_->GetOutputTypeInfo(0), "output", output_name_);
  }

  std::string path_;
  int threads_;
  std::unique_ptr<Ort::Session> session_;
  std::string input_name_, output_name_;
  std::vector<std::string> providers_;
};

}  // namespace

std::unique_ptr<Engine> make_onnxruntime(const EngineArgs& args) { return std::unique_ptr<Engine>(new OrtEngine(args)); }

}  // namespace detail
}  // namespace anyir
