// OpenVINO engine through the OpenVINO C++ API, with the Python OpenVINOBackend's settings:
// INFERENCE_NUM_THREADS = physical cores (or Options::threads), device CPU by default with
// INFERENCE_PRECISION_HINT f32 (fp32 parity).  Metadata from the IR's rt_info section
// "anyir_edge" (keys stored without the "anyir_edge." prefix), else the ONNX frontend's copy
// under "framework".
#include <openvino/openvino.hpp>

#include <algorithm>
#include <cstring>
#include <cctype>
#include <sstream>

#include "engine.hpp"

namespace anyir {
namespace detail {
namespace {

std::string first_line(const std::string& s) {
  // OpenVINO messages start with a source location line on some builds: keep the first informative line
  std::istringstream in(s);
  std::string line, best;
  while (std::getline(in, line)) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (line.empty() || line.rfind("Exception from", 0) == 0 || line.rfind("Check '", 0) == 0) {
      if (best.empty()) best = line;
      continue;
    }
    best = line;
    break;
  }
  return best.size() > 200 ? best.substr(0, 200) : best;
}

class OvEngine final : public Engine {
 public:
  explicit OvEngine(const EngineArgs& a) : path_(a.path), threads_(a.threads) {
    device_ = a.device.empty() ? "CPU" : a.device;
    std::transform(device_.begin(), device_.end(), device_.begin(), [](unsigned char c) { return std::toupper(c); });
    std::shared_ptr<ov::Model> model;
    try {
      model = core_.read_model(path_);
    } catch (const std::exception& e) {
      fail(ErrorCode::Model, path_ + ": OpenVINO cannot read it (" + first_line(e.what()) + ")");
    }
    read_metadata(*model);
    check_signature(*model);
    try {
      ov::AnyMap cfg{ov::inference_num_threads(threads_)};
      if (device_ == "CPU") cfg.emplace(ov::hint::inference_precision(ov::element::f32));
      compiled_ = core_.compile_model(model, device_, cfg);
      request_ = compiled_.create_infer_request();
    } catch (const std::exception& e) {
      fail(ErrorCode::Engine, path_ + ": OpenVINO cannot compile it for " + device_ + " (" + first_line(e.what()) + ")");
    }
  }

  void run(const float* x, int h, int w, std::vector<float>& y) override {
    try {
      // copy into the request's own input tensor (as Python's infer(share_inputs=False) does):
      // measured faster with the CPU plugin than wrapping the caller's buffer with set_input_tensor
      ov::Tensor in = request_.get_input_tensor();
      in.set_shape(ov::Shape{1, 3, static_cast<size_t>(h), static_cast<size_t>(w)});
      std::memcpy(in.data<float>(), x, sizeof(float) * 3 * static_cast<size_t>(h) * w);
      request_.infer();
      const ov::Tensor out = request_.get_output_tensor();
      const float* p = out.data<const float>();
      y.assign(p, p + out.get_size());
    } catch (const std::exception& e) {
      fail(ErrorCode::Engine, path_ + ": OpenVINO inference failed (" + first_line(e.what()) + ")");
    }
  }

  std::string kind() const override { return "openvino"; }
  std::string describe() const override {
    return "openvino " + std::string(ov::get_openvino_version().buildNumber) + " (" + device_ + ", " +
           std::to_string(threads_) + " threads)";
  }
  double bytes_per_pixel_per_dim() const override { return 120.0; }

 private:
  void read_metadata(const ov::Model& model) {
    try {
      if (model.has_rt_info("anyir_edge")) {
        const ov::AnyMap section = model.get_rt_info<ov::AnyMap>("anyir_edge");
        for (const auto& kv : section) {
          try {
            metadata[std::string(kMetaPrefix) + kv.first] =
                model.get_rt_info<std::string>(std::vector<std::string>{"anyir_edge", kv.first});
          } catch (const std::exception&) {
          }
        }
      }
    } catch (const std::exception&) {
    }
    if (metadata.empty()) {  // the ONNX frontend's copy of metadata_props
      for (const char* k : keys::kRuntimeKeys) {
        const std::string key = k;
        try {
          if (model.has_rt_info(std::vector<std::string>{"framework", key}))
            metadata[key] = model.get_rt_info<std::string>(std::vector<std::string>{"framework", key});
        } catch (const std::exception&) {
        }
      }
    }
  }

  void check_signature(const ov::Model& model) {
    if (model.inputs().size() != 1 || model.outputs().size() != 1)
      fail(ErrorCode::Model, path_ + ": not an AnyIR restoration model (expected 1 input and 1 output, found " +
                                 std::to_string(model.inputs().size()) + " and " + std::to_string(model.outputs().size()) + ")");
    for (const auto& port : {model.input(), model.output()}) {
      const ov::PartialShape ps = port.get_partial_shape();
      const bool ok = port.get_element_type() == ov::element::f32 && ps.rank().is_static() && ps.rank().get_length() == 4 &&
                      (ps[1].is_dynamic() || ps[1].get_length() == 3);
      if (!ok)
        fail(ErrorCode::Model, path_ + ": not an AnyIR restoration model (a port is " + port.get_element_type().get_type_name() +
                                   " " + ps.to_string() + ", expected f32 [N,3,H,W])");
    }
  }

  std::string path_, device_;
  int threads_;
  ov::Core core_;
  ov::CompiledModel compiled_;
  ov::InferRequest request_;
};

}  // namespace

std::unique_ptr<Engine> make_openvino(const EngineArgs& args) { return std::unique_ptr<Engine>(new OvEngine(args)); }

}  // namespace detail
}  // namespace anyir
