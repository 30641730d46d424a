// TensorRT engine (serialized .engine from `anyir-export --to trt`), TensorRT >= 10 API.
// Compiled only when CMake finds NvInfer.h, libnvinfer and the CUDA runtime (ANYIR_WITH_TENSORRT).
// NOT BUILT OR TESTED on the project machines (no NVIDIA GPU / TensorRT there).
// The engine file carries no anyir_edge metadata: it is read from the NAME.trt.json sidecar that
// the exporter writes (its "metadata" object); without one, the defaults (size multiple 8) apply.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "engine.hpp"

namespace anyir {
namespace detail {
namespace {

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kERROR) last = msg;
  }
  std::string last;
};

void cuda_check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) fail(ErrorCode::Engine, what + ": " + cudaGetErrorString(e));
}

class TrtEngine final : public Engine {
 public:
  explicit TrtEngine(const EngineArgs& a) : path_(a.path) {
    std::ifstream f(path_, std::ios::binary);
    std::vector<char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (blob.empty()) fail(ErrorCode::Model, path_ + ": empty TensorRT engine file");
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) fail(ErrorCode::Engine, "cannot create the TensorRT runtime");
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) fail(ErrorCode::Model, path_ + ": TensorRT cannot deserialize it (" + logger_.last + ")");
    if (engine_->getNbIOTensors() != 2) fail(ErrorCode::Model, path_ + ": not an AnyIR engine (expected 2 I/O tensors)");
    for (int i = 0; i < 2; ++i) {
      const char* n = engine_->getIOTensorName(i);
      (engine_->getTensorIOMode(n) == nvinfer1::TensorIOMode::kINPUT ? in_name_ : out_name_) = n;
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) fail(ErrorCode::Engine, path_ + ": cannot create a TensorRT execution context");
    cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    // NAME.trt.json, written by `anyir-export --to trt` beside NAME.engine (anyir_edge/export/trt.py)
    std::string side_path = path_;
    const auto dot = side_path.find_last_of('.'), slash = side_path.find_last_of('/');
    if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) side_path.resize(dot);
    std::ifstream side(side_path + ".trt.json");
    if (side) {  // its "metadata" object holds "anyir_edge.<key>": "value" pairs
      std::string s((std::istreambuf_iterator<char>(side)), std::istreambuf_iterator<char>());
      for (const char* k : {"size_multiple", "name", "layout"}) {
        const std::string key = std::string(kMetaPrefix) + k, q = "\"" + key + "\"";
        auto p = s.find(q);
        if (p == std::string::npos) continue;
        p = s.find('"', s.find(':', p + q.size()) + 1);
        const auto e = s.find('"', p + 1);
        if (p != std::string::npos && e != std::string::npos) metadata[key] = s.substr(p + 1, e - p - 1);
      }
    }
  }
  ~TrtEngine() override {
    if (d_in_) cudaFree(d_in_);
    if (d_out_) cudaFree(d_out_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  void run(const float* x, int h, int w, std::vector<float>& y) override {
    const size_t n = static_cast<size_t>(3) * h * w, bytes = n * sizeof(float);
    if (bytes > cap_) {
      if (d_in_) cudaFree(d_in_);
      if (d_out_) cudaFree(d_out_);
      d_in_ = d_out_ = nullptr;
      cuda_check(cudaMalloc(&d_in_, bytes), "cudaMalloc");
      cuda_check(cudaMalloc(&d_out_, bytes), "cudaMalloc");
      cap_ = bytes;
    }
    if (!context_->setInputShape(in_name_.c_str(), nvinfer1::Dims4{1, 3, h, w}))
      fail(ErrorCode::Engine, path_ + ": the engine does not accept 1x3x" + std::to_string(h) + "x" + std::to_string(w));
    context_->setTensorAddress(in_name_.c_str(), d_in_);
    context_->setTensorAddress(out_name_.c_str(), d_out_);
    cuda_check(cudaMemcpyAsync(d_in_, x, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpy");
    if (!context_->enqueueV3(stream_)) fail(ErrorCode::Engine, path_ + ": TensorRT enqueue failed (" + logger_.last + ")");
    y.resize(n);
    cuda_check(cudaMemcpyAsync(y.data(), d_out_, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpy");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  std::string kind() const override { return "tensorrt"; }
  std::string describe() const override { return "tensorrt (GPU)"; }
  double bytes_per_pixel_per_dim() const override { return 150.0; }

 private:
  struct Del {
    template <class T>
    void operator()(T* p) const { delete p; }
  };
  std::string path_, in_name_, out_name_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime, Del> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine, Del> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext, Del> context_;
  cudaStream_t stream_ = nullptr;
  void* d_in_ = nullptr;
  void* d_out_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace

std::unique_ptr<Engine> make_tensorrt(const EngineArgs& args) { return std::unique_ptr<Engine>(new TrtEngine(args)); }

}  // namespace detail
}  // namespace anyir
