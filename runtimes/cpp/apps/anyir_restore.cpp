// anyir-restore-cpp INPUT OUTPUT --model FILE [--tile N] [...]: the example app of the C++ runtime.
//
// Image IO through stb (Debian libstb-dev): INPUT is PNG/JPEG/BMP/TGA/PNM... read as 8-bit RGB
// (gray expanded, alpha dropped, 16-bit scaled to 8-bit by stb).  OUTPUT by suffix: .png, .bmp,
// .tga, .jpg (8-bit, restored through the uint8 API), or .npy (HxWx3 float32, restored through
// the float API from the same input scaled by 1/255).  --bench N times N restores after one
// warm-up and prints one JSON line.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "anyir/restorer.hpp"

namespace {

const char* kProg = "anyir-restore-cpp";

[[noreturn]] void usage(const std::string& msg) {
  std::cerr << "usage: " << kProg
            << " INPUT OUTPUT --model FILE [--tile N] [--overlap N] [--threads N] [--backend onnxruntime|openvino|tensorrt|executorch]\n"
               "       [--device D] [--memory-limit MB] [--bench N] [--quiet]\n"
               "OUTPUT: .png/.bmp/.tga/.jpg (8-bit) or .npy (float32 HxWx3)\n";
  if (!msg.empty()) std::cerr << kProg << ": error: " << msg << "\n";
  std::exit(2);
}

std::string lower_suffix(const std::string& p) {
  const auto dot = p.find_last_of('.');
  const auto slash = p.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string s = p.substr(dot);
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

int to_int(const std::string& flag, const char* v) {
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (end == v || *end) usage(flag + " needs an integer, got '" + v + "'");
  return static_cast<int>(x);
}

bool write_npy(const std::string& path, const float* data, int h, int w) {
  std::ostringstream hdr;
  hdr << "{'descr': '<f4', 'fortran_order': False, 'shape': (" << h << ", " << w << ", 3), }";
  std::string header = hdr.str();
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  const unsigned short len = static_cast<unsigned short>(header.size());
  const unsigned char lenb[2] = {static_cast<unsigned char>(len & 0xff), static_cast<unsigned char>(len >> 8)};
  bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(lenb, 1, 2, f) == 2 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size();
  const size_t n = static_cast<size_t>(h) * w * 3;
  ok = ok && std::fwrite(data, sizeof(float), n, f) == n;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> pos;
  std::string model;
  anyir::Options opt;
  int bench = 0;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) usage(std::string(name) + " needs a value");
      return argv[++i];
    };
    if (a == "--model") model = value("--model");
    else if (a == "--tile") opt.tile = to_int(a, value("--tile"));
    else if (a == "--overlap") opt.overlap = to_int(a, value("--overlap"));
    else if (a == "--threads") opt.threads = to_int(a, value("--threads"));
    else if (a == "--device") opt.device = value("--device");
    else if (a == "--memory-limit") opt.memory_limit_mb = std::atof(value("--memory-limit"));
    else if (a == "--bench") bench = to_int(a, value("--bench"));
    else if (a == "--quiet" || a == "-q") quiet = true;
    else if (a == "--backend") {
      const std::string b = value("--backend");
      if (b == "onnxruntime" || b == "ort" || b == "onnx") opt.backend = anyir::Backend::OnnxRuntime;
      else if (b == "openvino" || b == "ov") opt.backend = anyir::Backend::OpenVINO;
      else if (b == "tensorrt" || b == "trt") opt.backend = anyir::Backend::TensorRT;
      else if (b == "executorch" || b == "et") opt.backend = anyir::Backend::ExecuTorch;
      else usage("unknown backend '" + b + "' (known: onnxruntime, openvino, tensorrt, executorch)");
    } else if (a == "-h" || a == "--help") usage("");
    else if (a.size() > 1 && a[0] == '-') usage("unknown option " + a);
    else pos.push_back(a);
  }
  if (pos.size() != 2) usage("expected INPUT and OUTPUT");
  if (model.empty()) usage("--model FILE is required");
  const std::string in = pos[0], out = pos[1], suffix = lower_suffix(out);
  const bool as_float = suffix == ".npy";
  if (!as_float && suffix != ".png" && suffix != ".bmp" && suffix != ".tga" && suffix != ".jpg" && suffix != ".jpeg")
    usage("OUTPUT " + out + ": unsupported format (use .png, .bmp, .tga, .jpg or .npy)");
  try {
    int w = 0, h = 0, comp = 0;
    unsigned char* pixels = stbi_load(in.c_str(), &w, &h, &comp, 3);
    if (!pixels) {
      FILE* f = std::fopen(in.c_str(), "rb");
      if (!f) throw anyir::Error(anyir::ErrorCode::Image, in + ": no such file");
      std::fclose(f);
      throw anyir::Error(anyir::ErrorCode::Image, in + ": cannot decode (" + stbi_failure_reason() + ")");
    }
    std::vector<unsigned char> rgb(pixels, pixels + static_cast<size_t>(w) * h * 3);
    stbi_image_free(pixels);
    std::vector<float> rgbf;
    if (as_float) {
      rgbf.resize(rgb.size());
      const float scale = static_cast<float>(1.0 / 255.0);
      for (size_t k = 0; k < rgb.size(); ++k) rgbf[k] = static_cast<float>(rgb[k]) * scale;
    }
    const anyir::Restorer r(model, opt);
    for (const auto& w : r.warnings()) std::cerr << kProg << ": warning: " << w << "\n";
    int tile = 0, overlap = 0;
    r.plan_tile(w, h, &tile, &overlap);
    anyir::Image8 o8;
    anyir::ImageF of;
    auto once = [&] {
      if (as_float) of = r.restore(rgbf.data(), w, h);
      else o8 = r.restore(rgb.data(), w, h);
    };
    std::vector<double> times;
    if (bench > 0) once();  // warm-up
    const int runs = std::max(1, bench);
    for (int k = 0; k < runs; ++k) {
      const auto t0 = std::chrono::steady_clock::now();
      once();
      times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    const std::string tmp = out + ".tmp" + lower_suffix(out);
    bool ok;
    if (as_float) ok = write_npy(tmp, of.data.data(), h, w);
    else if (suffix == ".png") ok = stbi_write_png(tmp.c_str(), w, h, 3, o8.data.data(), 3 * w) != 0;
    else if (suffix == ".bmp") ok = stbi_write_bmp(tmp.c_str(), w, h, 3, o8.data.data()) != 0;
    else if (suffix == ".tga") ok = stbi_write_tga(tmp.c_str(), w, h, 3, o8.data.data()) != 0;
    else ok = stbi_write_jpg(tmp.c_str(), w, h, 3, o8.data.data(), 95) != 0;
    if (!ok || std::rename(tmp.c_str(), out.c_str()) != 0) {
      std::remove(tmp.c_str());
      throw anyir::Error(anyir::ErrorCode::Image, out + ": cannot write");
    }
    if (bench > 0) {
      std::ostringstream s;
      s << "{\"backend\": \"" << r.backend_name() << "\", \"width\": " << w << ", \"height\": " << h
        << ", \"tile\": " << tile << ", \"times_ms\": [";
      for (size_t k = 0; k < times.size(); ++k) s << (k ? ", " : "") << times[k];
      s << "]}";
      std::cout << s.str() << std::endl;
    } else if (!quiet) {
      std::cerr << kProg << ": " << in << " -> " << out << " (" << w << "x" << h << ", "
                << (tile ? "tiles of " + std::to_string(tile) + " overlap " + std::to_string(overlap) : std::string("whole"))
                << ", " << r.describe() << ", " << times[0] << " ms)\n";
    }
  } catch (const std::exception& e) {
    std::cerr << kProg << ": error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
