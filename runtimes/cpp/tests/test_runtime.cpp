// Unit tests of the C++ runtime (no framework): image plumbing, bad inputs, the C ABI.
//   anyir_runtime_tests [--model GOOD.onnx] [--wrong WRONG.onnx] [--openvino GOOD.xml] [--pte GOOD.pte]
// Model-dependent checks are skipped (and reported) when their file is not given.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "anyir/anyir.h"
#include "anyir/restorer.hpp"
#include "engine.hpp"

namespace {
int g_failed = 0, g_checks = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    ++g_checks;                                                                     \
    if (!(cond)) {                                                                  \
      ++g_failed;                                                                   \
      std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK failed: " #cond "\n";   \
    }                                                                               \
  } while (0)

// f() must throw anyir::Error with `code`, a one-line message containing `part`.
void expect_error(const char* what, anyir::ErrorCode code, const std::string& part, const std::function<void()>& f) {
  ++g_checks;
  try {
    f();
    ++g_failed;
    std::cerr << "FAIL " << what << ": no exception\n";
  } catch (const anyir::Error& e) {
    const std::string m = e.what();
    const bool ok = e.code() == code && m.find(part) != std::string::npos && m.find('\n') == std::string::npos && !m.empty();
    if (!ok) {
      ++g_failed;
      std::cerr << "FAIL " << what << ": code " << static_cast<int>(e.code()) << " message '" << m << "'\n";
    } else {
      std::cout << "ok   " << what << ": " << m << "\n";
    }
  } catch (const std::exception& e) {
    ++g_failed;
    std::cerr << "FAIL " << what << ": foreign exception '" << e.what() << "'\n";
  }
}

void test_plumbing() {
  using namespace anyir::detail;
  // padding: rows 0..4 of a 5-row plane padded to 8 reflect (rows 3, 2, 1); a 2-row plane edge-replicates
  std::vector<float> x(5 * 2);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 2; ++c) x[r * 2 + c] = static_cast<float>(10 * r + c);
  int H = 0, W = 0;
  auto y = pad_to_multiple(x.data(), 1, 5, 2, 8, &H, &W);
  CHECK(H == 8 && W == 8);
  CHECK(y[5 * 8 + 0] == 30 && y[6 * 8 + 0] == 20 && y[7 * 8 + 0] == 10);  // reflect rows
  CHECK(y[0 * 8 + 2] == 1 && y[0 * 8 + 7] == 1 && y[7 * 8 + 7] == 11);    // edge columns (pad 6 >= width 2)
  auto z = pad_to_multiple(x.data(), 1, 5, 2, 1, &H, &W);
  CHECK(H == 5 && W == 2 && z == x);
  // tiles
  CHECK((tile_starts(100, 64, 16) == std::vector<int>{0, 36}));
  CHECK((tile_starts(200, 64, 16) == std::vector<int>{0, 48, 96, 136}));
  CHECK((tile_starts(64, 64, 16) == std::vector<int>{0}));
  // ramps: neighbouring ramps sum to 1 over the overlap; every weight > 0; border sides flat
  const auto a = ramp_weights(0, 64, 100, 16), b = ramp_weights(36, 64, 100, 16);
  CHECK(a[0] == 1.0f && b[63] == 1.0f);
  bool sums = true, positive = true;
  for (int k = 0; k < 16; ++k) sums = sums && std::fabs(a[48 + k] + b[k] - 1.0f) < 1e-6f;
  for (float v : a) positive = positive && v > 0;
  for (float v : b) positive = positive && v > 0;
  CHECK(sums);
  CHECK(positive);
  CHECK(ramp_weights(10, 8, 100, 32).size() == 8);  // overlap capped at half the length
  // auto tile: sqrt(1 GiB / (95 * 16)) = 840.6 -> 840; floor max(64, (64 + 8) / 8 * 8 + 8 = 80)
  CHECK(auto_tile(0, 95.0 * 16, 1LL << 30, 8, 32) == 840);
  CHECK(auto_tile(0, 95.0 * 16, 1, 8, 32) == 80);
  CHECK(config_number("{\"dim\": 16, \"x\": [1]}", "dim", 32) == 16);
  CHECK(config_number("{\"dims\": 16}", "dim", 32) == 32);
  CHECK(physical_cores() >= 1);
}

void test_bad_models(const std::string& wrong) {
  using anyir::ErrorCode;
  expect_error("missing model", ErrorCode::Model, "no such model file", [] { anyir::Restorer r("/nonexistent/m.onnx"); });
  expect_error("unknown suffix", ErrorCode::Model, "unknown model type", [] { anyir::Restorer r("model.bin"); });
  expect_error("empty path", ErrorCode::Model, "no model path", [] { anyir::Restorer r(""); });
  const std::string junk = "anyir_test_junk.onnx";
  { std::ofstream(junk) << "this is not a protobuf\n"; }
#ifdef ANYIR_WITH_ONNXRUNTIME
  expect_error("junk .onnx", ErrorCode::Model, "onnxruntime cannot load it", [&] { anyir::Restorer r(junk); });
#else
  expect_error("onnxruntime not built", ErrorCode::Unsupported, "without ONNX Runtime", [&] { anyir::Restorer r(junk); });
#endif
  std::remove(junk.c_str());
  anyir::Options bad;
  bad.overlap = -1;
  expect_error("negative overlap", ErrorCode::InvalidArgument, "overlap must be >= 0", [&] { anyir::Restorer r("x.onnx", bad); });
  bad = anyir::Options();
  bad.backend = anyir::Backend::TensorRT;
#ifndef ANYIR_WITH_TENSORRT
  { std::ofstream("anyir_test.engine") << "x"; }
  expect_error("tensorrt not built", ErrorCode::Unsupported, "without TensorRT", [&] { anyir::Restorer r("anyir_test.engine", bad); });
  std::remove("anyir_test.engine");
#endif
  if (!wrong.empty())
    expect_error("wrong-model ONNX", ErrorCode::Model, "not an AnyIR restoration model", [&] { anyir::Restorer r(wrong); });
  else
    std::cout << "skip wrong-model ONNX (no --wrong FILE)\n";
  // C ABI
  anyir_restorer* r = nullptr;
  CHECK(anyir_open("/nonexistent/m.onnx", nullptr, &r) == ANYIR_E_MODEL && r == nullptr);
  CHECK(std::string(anyir_last_error()).find("no such model file") != std::string::npos);
  CHECK(anyir_open(nullptr, nullptr, &r) == ANYIR_E_INVALID_ARGUMENT);
  CHECK(anyir_restore_u8(nullptr, nullptr, 1, 1, 0, nullptr, 0) == ANYIR_E_INVALID_ARGUMENT);
}

void test_bad_images(const std::string& model, const char* label) {
  using anyir::ErrorCode;
  anyir::Options o;
  o.threads = 1;
  const anyir::Restorer r(model, o);
  std::cout << "model " << label << ": " << r.describe() << ", size multiple " << r.size_multiple() << "\n";
  CHECK(r.size_multiple() == 8);
  CHECK(r.metadata("layout") == "NCHW");
  std::vector<std::uint8_t> img(3 * 13 * 11, 128);
  expect_error("zero-size image", ErrorCode::Image, "zero-size image (0x13)", [&] { r.restore(img.data(), 13, 0); });
  expect_error("zero-width image", ErrorCode::Image, "zero-size image", [&] { r.restore(img.data(), 0, 11); });
  expect_error("null buffer", ErrorCode::InvalidArgument, "null image buffer",
               [&] { r.restore(static_cast<const std::uint8_t*>(nullptr), 13, 11); });
  expect_error("short stride", ErrorCode::InvalidArgument, "row stride", [&] { r.restore(img.data(), 13, 11, 20); });
  std::vector<float> f(3 * 13 * 11, 0.5f);
  f[7] = std::numeric_limits<float>::quiet_NaN();
  expect_error("NaN pixel", ErrorCode::Image, "NaN or infinite", [&] { r.restore(f.data(), 13, 11); });
  anyir::Options t;
  t.threads = 1;
  t.tile = 64;
  t.overlap = 32;
  const anyir::Restorer rt(model, t);
  std::vector<std::uint8_t> big(3 * 100 * 100, 7);
  expect_error("overlap vs tile", ErrorCode::InvalidArgument, "less than half the tile size", [&] { rt.restore(big.data(), 100, 100); });
  anyir::Options nt;
  nt.threads = 1;
  nt.tile = anyir::kNoTile;
  nt.memory_limit_mb = 0.001;
  const anyir::Restorer rn(model, nt);
  // an engine built for H, W up to a bound (anyir_edge.max_side: an ExecuTorch program) refuses that first
  const std::string max_side = r.metadata("max_side");
  expect_error("no tiling over the limit", ErrorCode::Image,
               max_side.empty() ? "too large for the memory limit"
                                : "larger than the " + max_side + " pixels this engine was built for and tiling is off",
               [&] { rn.restore(big.data(), 100, 100); });
  // stride: a padded buffer gives the packed result; tiny images (1x1, 3x2) work
  const int w = 13, h = 11;
  std::vector<std::uint8_t> packed(3 * w * h), strided(h * (3 * w + 5), 0);
  for (size_t k = 0; k < packed.size(); ++k) packed[k] = static_cast<std::uint8_t>((k * 37) % 251);
  for (int y = 0; y < h; ++y) std::memcpy(&strided[y * (3 * w + 5)], &packed[y * 3 * w], 3 * w);
  const auto a = r.restore(packed.data(), w, h), b = r.restore(strided.data(), w, h, 3 * w + 5);
  CHECK(a.width == w && a.height == h && a.data == b.data);
  CHECK(r.restore(packed.data(), 1, 1).data.size() == 3);
  CHECK(r.restore(packed.data(), 3, 2).data.size() == 18);
  // C ABI on a real model
  anyir_options co;
  anyir_options_init(&co);
  co.threads = 1;
  anyir_restorer* cr = nullptr;
  CHECK(anyir_open(model.c_str(), &co, &cr) == ANYIR_OK && cr);
  std::vector<std::uint8_t> out(3 * w * h);
  CHECK(anyir_restore_u8(cr, packed.data(), w, h, 0, out.data(), 0) == ANYIR_OK && out == a.data);
  CHECK(anyir_restore_u8(cr, packed.data(), 0, h, 0, out.data(), 0) == ANYIR_E_IMAGE);
  CHECK(std::string(anyir_last_error()).find("zero-size") != std::string::npos);
  char buf[16];
  CHECK(anyir_metadata(cr, "size_multiple", buf, sizeof buf) == 1 && std::string(buf) == "8");
  CHECK(anyir_metadata(cr, "no_such_key", buf, sizeof buf) == -1);
  CHECK(anyir_size_multiple(cr) == 8);
  anyir_close(cr);
}
}  // namespace

int main(int argc, char** argv) {
  std::string model, wrong, ov, pte;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--model") model = argv[i + 1];
    else if (a == "--wrong") wrong = argv[i + 1];
    else if (a == "--openvino") ov = argv[i + 1];
    else if (a == "--pte") pte = argv[i + 1];
  }
  std::cout << "anyir_runtime " << anyir::Restorer::version() << ", backends:";
  for (const auto& b : anyir::Restorer::backends()) std::cout << " " << b;
  std::cout << "\n";
  test_plumbing();
  test_bad_models(wrong);
  if (!model.empty()) test_bad_images(model, "onnx");
  else std::cout << "skip model checks (no --model FILE)\n";
#ifdef ANYIR_WITH_OPENVINO
  if (!ov.empty()) test_bad_images(ov, "openvino");
#endif
#ifdef ANYIR_WITH_EXECUTORCH
  if (!pte.empty()) test_bad_images(pte, "executorch");
#endif
  std::cout << (g_failed ? "FAILED " : "PASSED ") << g_checks - g_failed << "/" << g_checks << " checks\n";
  return g_failed ? 1 : 0;
}
