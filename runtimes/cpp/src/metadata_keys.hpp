// The engine-file metadata keys the C++ runtime reads.  Their owner is the Python module
// anyir_edge/artifact.py (RUNTIME_KEYS); tests/test_artifact.py fails when the two lists differ.
#pragma once

namespace anyir {
namespace detail {
namespace keys {

constexpr const char* kPrefix = "anyir_edge.";
constexpr const char* kName = "anyir_edge.name";
constexpr const char* kArch = "anyir_edge.arch";
constexpr const char* kConfig = "anyir_edge.config";
constexpr const char* kLayout = "anyir_edge.layout";
constexpr const char* kSizeMultiple = "anyir_edge.size_multiple";
constexpr const char* kFft = "anyir_edge.fft";
constexpr const char* kPrecision = "anyir_edge.precision";
constexpr const char* kInt8WeightBits = "anyir_edge.int8_weight_bits";
constexpr const char* kVersion = "anyir_edge.version";
constexpr const char* kMaxSide = "anyir_edge.max_side";
constexpr const char* kSizes = "anyir_edge.sizes";

// read from an OpenVINO IR's "framework" section when its own "anyir_edge" section is absent
constexpr const char* kRuntimeKeys[] = {kName, kArch, kConfig, kLayout, kSizeMultiple, kFft,
                                        kPrecision, kInt8WeightBits, kVersion, kMaxSide, kSizes};

}  // namespace keys
}  // namespace detail
}  // namespace anyir
