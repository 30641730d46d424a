#!/usr/bin/env bash
# Build the AnyIR C++ runtime (library, example app, unit test) from a fresh Debian machine.
#
#   runtimes/cpp/build.sh            # prints the path of anyir-restore-cpp on its last line
#
# What it does (all downloads land in runtimes/cpp/third_party/, builds in runtimes/cpp/build/):
#  1. Tools: cmake, g++, make and libstb-dev (stb_image for the example app's PNG IO).
#     Missing ones are installed with `apt-get install -y` when running as root; otherwise it
#     stops and prints the apt command.
#  2. ONNX Runtime C++ headers: Debian trixie's libonnxruntime-dev (1.21): the pinned .deb from
#     deb.debian.org's pool, checked against its SHA-256; if that fails (trixie moved on), with
#     `apt-get download` through a private apt configuration (a trixie .sources file and lists/
#     cache directories under third_party/apt; the system's apt sources and state are not
#     touched).  Unpacked with `dpkg -x`.  Skipped when ORT_INCLUDE_DIR is set.
#  3. ONNX Runtime library: libonnxruntime.so.1.* from the active Python's `onnxruntime` wheel
#     (symlinked as third_party/onnxruntime/lib/libonnxruntime.so.1).  The headers' C API
#     version (ORT_API_VERSION 21) is older than the wheel's, which ORT supports (the runtime
#     checks it at start-up and says so otherwise).
#  4. OpenVINO: the C++ SDK inside the `openvino` wheel (headers + OpenVINOConfig.cmake in
#     site-packages/openvino/cmake); built without OpenVINO if the wheel is not installed.
#  5. TensorRT: compiled only when NvInfer.h and libnvinfer are found (TENSORRT_ROOT or system).
#  6. ExecuTorch: the C++ runtime inside the `executorch` wheel (share/cmake/executorch-config.cmake);
#     built without it if the wheel is not installed.
#
# Environment: PYTHON (default: the project's .venv/bin/python, else python3), BUILD_DIR,
# JOBS (default 2), BUILD_TYPE (CMake's; default Release; the tests use None: no optimisation,
# a faster compile, the same results), ORT_INCLUDE_DIR, ANYIR_WITH_ONNXRUNTIME=0 to build without ONNX Runtime
# (steps 2 and 3 skipped: the configuration of an Android app that runs .pte files only),
# ANYIR_WITH_OPENVINO=0 to skip OpenVINO, ANYIR_WITH_EXECUTORCH=0 to skip ExecuTorch.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TP="$HERE/third_party"
BUILD_DIR="${BUILD_DIR:-$HERE/build}"
JOBS="${JOBS:-2}"
BUILD_TYPE="${BUILD_TYPE:-Release}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
say() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- 1. tools
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
[[ -f /usr/include/stb/stb_image.h && -f /usr/include/stb/stb_image_write.h ]] || missing+=(libstb-dev)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
[[ -f /usr/include/openssl/evp.h ]] || missing+=(libssl-dev)  # SHA-256 of engines (the certificate check)
if ((${#missing[@]})); then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    say "installing missing build tools with apt-get: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "missing ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}"
  fi
fi

ORT_ARGS=(-DANYIR_WITH_ONNXRUNTIME=OFF)
if [[ "${ANYIR_WITH_ONNXRUNTIME:-1}" != 0 ]]; then
# ---------------------------------------------------------------- 2. ONNX Runtime headers
ORT_PKG=libonnxruntime-dev
ORT_DEB_URL="http://deb.debian.org/debian/pool/main/o/onnxruntime/libonnxruntime-dev_1.21.0%2Bdfsg-1_amd64.deb"
ORT_DEB_SHA256=14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08
if [[ -z "${ORT_INCLUDE_DIR:-}" ]]; then
  ORT_INCLUDE_DIR="$TP/trixie-root/usr/include/onnxruntime"
  # the pinned trixie package, fetched straight from the pool and checked against its SHA-256 (a
  # second; the apt index below costs ~2 minutes of downloads and is the fallback when trixie
  # has moved on)
  if [[ ! -f "$ORT_INCLUDE_DIR/onnxruntime_cxx_api.h" ]]; then
    mkdir -p "$TP/debs"
    deb="$TP/debs/$(basename "${ORT_DEB_URL//%2B/+}")"
    if "$PYTHON" - "$ORT_DEB_URL" "$deb" "$ORT_DEB_SHA256" <<'PY' 2>/dev/null
import hashlib, sys, urllib.request
url, dest, want = sys.argv[1:]
data = urllib.request.urlopen(url, timeout=60).read()
if hashlib.sha256(data).hexdigest() != want:
    sys.exit(1)
open(dest, "wb").write(data)
PY
    then
      dpkg -x "$deb" "$TP/trixie-root"
      say "unpacked $(basename "$deb") (pinned, SHA-256 checked)"
    else
      say "the pinned $(basename "$deb") is not on deb.debian.org any more (or differs): using trixie's apt index"
    fi
  fi
  if [[ ! -f "$ORT_INCLUDE_DIR/onnxruntime_cxx_api.h" ]]; then
    APT="$TP/apt"
    mkdir -p "$APT/sources.d" "$APT/lists/partial" "$APT/cache/archives/partial" "$TP/debs"
    cat > "$APT/sources.d/trixie.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    : > "$APT/empty.list"
    aptopts=(-q -o "Dir::Etc::SourceList=$APT/empty.list" -o "Dir::Etc::SourceParts=$APT/sources.d"
             -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Dir::State::status=/dev/null"
             -o "Acquire::Languages=none" -o "APT::Sandbox::User=root")
    say "fetching $ORT_PKG from Debian trixie (private apt config in $APT)"
    apt-get "${aptopts[@]}" update >/dev/null || die "apt-get update of the trixie index failed (network?)"
    ver="$(apt-cache "${aptopts[@]}" show "$ORT_PKG" | sed -n 's/^Version: //p' | head -1)"
    (cd "$TP/debs" && apt-get "${aptopts[@]}" download "$ORT_PKG" >/dev/null) || die "apt-get download $ORT_PKG failed"
    deb="$(ls -t "$TP"/debs/${ORT_PKG}_*.deb | head -1)"
    dpkg -x "$deb" "$TP/trixie-root"
    say "unpacked $(basename "$deb") (version $ver)"
    rm -rf "$APT/lists" "$APT/cache"   # ~20 MB of indexes, not needed any more
  fi
fi
[[ -f "$ORT_INCLUDE_DIR/onnxruntime_cxx_api.h" ]] || die "no onnxruntime_cxx_api.h in $ORT_INCLUDE_DIR"

# ---------------------------------------------------------------- 3. ONNX Runtime library (wheel)
ORT_WHEEL_LIB="$("$PYTHON" - <<'PY'
import glob, os, sys
try:
    import onnxruntime
except ImportError:
    sys.exit(0)
d = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
libs = sorted(glob.glob(os.path.join(d, "libonnxruntime.so.1*")), key=len)
print(libs[-1] if libs else "")
PY
)"
[[ -n "$ORT_WHEEL_LIB" ]] || die "$PYTHON has no onnxruntime wheel with libonnxruntime.so.1* (pip install onnxruntime)"
ORT_VERSION="$("$PYTHON" -c 'import onnxruntime; print(onnxruntime.__version__)')"
mkdir -p "$TP/onnxruntime/lib"
ln -sfn "$ORT_WHEEL_LIB" "$TP/onnxruntime/lib/libonnxruntime.so.1"
ln -sfn libonnxruntime.so.1 "$TP/onnxruntime/lib/libonnxruntime.so"
say "onnxruntime: headers $ORT_INCLUDE_DIR, library $ORT_WHEEL_LIB (wheel $ORT_VERSION)"
ORT_ARGS=(-DANYIR_WITH_ONNXRUNTIME=ON "-DORT_INCLUDE_DIR=$ORT_INCLUDE_DIR" "-DORT_LIBRARY=$TP/onnxruntime/lib/libonnxruntime.so.1")
else
  say "onnxruntime: ANYIR_WITH_ONNXRUNTIME=0: building without the ONNX Runtime backend (as for an Android .pte-only app)"
fi

# ---------------------------------------------------------------- 4. OpenVINO (wheel)
OV_ARGS=(-DANYIR_WITH_OPENVINO=OFF)
if [[ "${ANYIR_WITH_OPENVINO:-1}" != 0 ]]; then
  OV_DIR="$("$PYTHON" -c 'import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), "cmake"))' 2>/dev/null || true)"
  if [[ -n "$OV_DIR" && -f "$OV_DIR/OpenVINOConfig.cmake" ]]; then
    OV_ARGS=(-DANYIR_WITH_OPENVINO=ON "-DOpenVINO_DIR=$OV_DIR")
    say "openvino: $OV_DIR ($("$PYTHON" -c 'import openvino; print(openvino.__version__)'))"
  else
    say "openvino: wheel not found for $PYTHON (pip install openvino); building without the OpenVINO backend"
  fi
fi

# ---------------------------------------------------------------- 4b. ExecuTorch (wheel)
# the executorch wheel ships its C++ runtime (libexecutorch.so, the XNNPACK delegate, kernels,
# headers and executorch-config.cmake): the same runtime an Android app links, built for x86 here
ET_ARGS=(-DANYIR_WITH_EXECUTORCH=OFF)
if [[ "${ANYIR_WITH_EXECUTORCH:-1}" != 0 ]]; then
  ET_DIR="$("$PYTHON" -c 'import executorch, os; print(os.path.join(list(executorch.__path__)[0], "share", "cmake"))' 2>/dev/null || true)"
  if [[ -n "$ET_DIR" && -f "$ET_DIR/executorch-config.cmake" ]]; then
    ET_ARGS=(-DANYIR_WITH_EXECUTORCH=ON "-Dexecutorch_DIR=$ET_DIR")
    say "executorch: $ET_DIR"
  else
    say "executorch: wheel not found for $PYTHON (pip install anyir-edge[executorch]); building without the ExecuTorch backend"
  fi
fi

# ---------------------------------------------------------------- 5. configure + build
mkdir -p "$BUILD_DIR"
cmake -S "$HERE" -B "$BUILD_DIR" "-DCMAKE_BUILD_TYPE=$BUILD_TYPE" \
  "${ORT_ARGS[@]}" "${OV_ARGS[@]}" "${ET_ARGS[@]}" ${TENSORRT_ROOT:+"-DTENSORRT_ROOT=$TENSORRT_ROOT"} >"$BUILD_DIR/configure.log" 2>&1 \
  || { cat "$BUILD_DIR/configure.log" >&2; die "cmake configure failed"; }
grep -E '^-- anyir:' "$BUILD_DIR/configure.log" >&2 || true
set +e
cmake --build "$BUILD_DIR" -j "$JOBS" 2>&1 | grep -Ev '^\[ *[0-9]+%\] (Building|Linking)' >&2
rc=${PIPESTATUS[0]}
set -e
[[ $rc == 0 && -x "$BUILD_DIR/anyir-restore-cpp" ]] || die "build failed (see above)"
say "built $BUILD_DIR/anyir-restore-cpp, $BUILD_DIR/anyir_runtime_tests"
echo "$BUILD_DIR/anyir-restore-cpp"
