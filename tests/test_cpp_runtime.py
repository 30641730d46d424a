"""The C++ runtime (runtimes/cpp, issue #7): build from scratch, run its unit tests, and check
that the example app ``anyir-restore-cpp`` gives the Python runtime's output on the same model.

Float outputs (.npy written by the app) must agree within 1e-4 max abs, 8-bit outputs (PNG)
be identical up to rounding ties (>= 60 dB), for the ONNX Runtime and OpenVINO backends,
whole images and forced small tiles (64, overlap 16) that exercise the blending.

The build (runtimes/cpp/build.sh) installs cmake/g++/libstb-dev with apt-get when they are
missing and this runs as root; without them and without root the module is skipped.
ANYIR_CPP_BUILD_DIR reuses an existing build directory (default: a fresh one under tmp).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import perturbed

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "runtimes" / "cpp"
ASSETS = ROOT / "anyir_edge" / "assets"
THREADS = 1  # same intra-op threads on both sides


def _can_build() -> str | None:
    missing = [t for t in ("cmake", "g++", "make") if shutil.which(t) is None]
    if not Path("/usr/include/stb/stb_image.h").exists():
        missing.append("libstb-dev")
    if missing and not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return f"C++ toolchain missing ({', '.join(missing)}) and not root to apt-get install it"
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        return "build.sh needs apt-get and dpkg (Debian) to fetch the ONNX Runtime headers"
    return None


pytestmark = pytest.mark.skipif(_can_build() is not None, reason=_can_build() or "")


def _build_sh(build_dir: str, **env) -> tuple[Path, str]:
    """runtimes/cpp/build.sh into ``build_dir`` with ``env`` added; (the app it built, its stderr).
    BUILD_TYPE None: no optimisation flags, so the compile is quicker; the time of these tests is
    spent in the inference libraries, and the results are the same (no FMA on the x86-64 baseline)."""
    env = dict(os.environ, PYTHON=sys.executable, JOBS="2", BUILD_TYPE=os.environ.get("ANYIR_CPP_BUILD_TYPE", "None"),
               BUILD_DIR=build_dir, **env)
    p = subprocess.run(["bash", str(CPP / "build.sh")], env=env, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, f"build.sh failed:\n{p.stderr[-4000:]}"
    app = Path(p.stdout.strip().splitlines()[-1])
    assert app.is_file() and os.access(app, os.X_OK), p.stdout
    return app, p.stderr


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return _build_sh(os.environ.get("ANYIR_CPP_BUILD_DIR") or str(tmp_path_factory.mktemp("cpp-build")))[0].parent


@pytest.fixture(scope="module")
def models(tmp_path_factory, request):
    """anyir-tiny with random weights (as tests/conftest.py's tiny_model) as ONNX and OpenVINO IR."""
    from anyir_edge.export import onnx_export

    d = tmp_path_factory.mktemp("cpp-models")
    m = perturbed()
    onnx_path = d / "anyir-tiny.onnx"
    exporter, opset = onnx_export.trace(m, str(onnx_path), "fold")
    meta = onnx_export.metadata(m, "fold", exporter, opset, None)
    onnx_export.finalize(str(onnx_path), meta)
    out = {"onnxruntime": onnx_path}
    # the default export: padding in the graph, size_multiple 1
    graph = d / "anyir-tiny-graphpad.onnx"
    exporter, opset = onnx_export.trace(m, str(graph), "fold", pad_in_graph=True)
    onnx_export.finalize(str(graph), onnx_export.metadata(m, "fold", exporter, opset, None, pad_in_graph=True))
    out["onnxruntime-graphpad"] = graph
    # the other architectures' golden fixtures (their authors' code with random weights; see
    # tests/test_promptir.py and tests/test_moce_ir.py), exported as anyir-export does by default
    from anyir_edge import load_model

    fixtures = Path(__file__).parent / "fixtures"
    for arch, ckpt in (("promptir", "promptir-authors-d6.ckpt"), ("moce-ir", "moce-ir-authors-d4-spread.ckpt")):
        net = load_model(fixtures / ckpt)
        fft = net.fast_fft_mode()
        path = d / f"{arch}.onnx"
        exporter, opset = onnx_export.trace(net, str(path), fft, pad_in_graph=True)
        onnx_export.finalize(str(path), onnx_export.metadata(net, fft, exporter, opset, None, pad_in_graph=True))
        out[arch] = path
    try:
        import openvino  # noqa: F401

        from anyir_edge.export.openvino_export import convert

        xml = d / "anyir-tiny.xml"
        convert(onnx_path, xml, meta)
        out["openvino"] = xml
    except ImportError:
        pass
    # the ExecuTorch program (conftest's small AnyIR, H and W <= 64: larger images are tiled)
    try:
        import executorch  # noqa: F401

        out["executorch"] = request.getfixturevalue("small_pte").path
        out["executorch-sized"] = request.getfixturevalue("small_pte_sized").path  # one static method, 32x32
    except ImportError:
        pass
    # a valid ONNX file that is not a restoration model
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "mlp", [x], [y])
    wrong = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    wrong.ir_version = 8
    onnx.save(wrong, str(d / "wrong.onnx"))
    out["wrong"] = d / "wrong.onnx"
    return out


def _rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_cpp_unit_tests(build, models, tmp_path):
    args = [str(build / "anyir_runtime_tests"), "--model", str(models["onnxruntime"]), "--wrong", str(models["wrong"])]
    if "openvino" in models:
        args += ["--openvino", str(models["openvino"])]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for what in ("missing model", "wrong-model ONNX", "zero-size image", "junk .onnx"):
        assert f"ok   {what}" in p.stdout
    assert "PASSED" in p.stdout


_PY: dict = {}


def _python_restorer(path: Path, tile, overlap):
    from anyir_edge.runtime import Restorer

    key = str(path)
    if key not in _PY:
        _PY[key] = Restorer.open(path, threads=THREADS)
    return _PY[key]


CASES = [
    # (backend, image, tile, overlap)
    ("onnxruntime", "colorfulcups_128x128.png", None, None),
    ("onnxruntime", "kite_251x333.png", None, None),
    ("onnxruntime", "kite_251x333.png", 64, 16),
    ("onnxruntime", "crop_3x5", None, None),
    ("onnxruntime-graphpad", "kite_251x333.png", None, None),
    ("onnxruntime-graphpad", "kite_251x333.png", 64, 16),
    ("openvino", "kite_251x333.png", None, None),
    ("openvino", "wood_160x160.png", 64, 16),
    ("promptir", "kite_251x333.png", None, None),
    ("moce-ir", "kite_251x333.png", None, None),
    ("moce-ir", "wood_160x160.png", 64, 16),
    ("executorch", "colorfulcups_128x128.png", None, None),  # over the program's 64: tiled automatically
    ("executorch", "crop_3x5", None, None),
    ("executorch-sized", "colorfulcups_128x128.png", None, None),  # tiles of its square size, 32
    ("executorch-sized", "crop_27x30", None, None),                # pads to 32x32: one whole run
]


@pytest.mark.parametrize("backend,image,tile,overlap", CASES, ids=[f"{b}-{i.split('_')[0]}-{'tile' + str(t) if t else 'whole'}"
                                                                   for b, i, t, _ in CASES])
def test_cpp_matches_python_runtime(build, models, tmp_path, backend, image, tile, overlap):
    import cv2

    if backend not in models:
        pytest.skip(f"{backend} is not installed for the Python runtime")
    model = models[backend]
    if image.startswith("crop_"):  # crop_3x5: smaller than the size multiple (edge replication in the padding)
        h, w = map(int, image[5:].split("x"))
        src = tmp_path / f"{image}.png"
        cv2.imwrite(str(src), cv2.imread(str(ASSETS / "kite_251x333.png"))[100:100 + h, 200:200 + w])
    else:
        src = ASSETS / image
    rgb = _rgb(src)
    app = build / "anyir-restore-cpp"
    base = [str(app), str(src), "", "--model", str(model), "--threads", str(THREADS), "--quiet"]
    if tile:
        base += ["--tile", str(tile), "--overlap", str(overlap)]
    outs = {}
    for ext in ("npy", "png"):
        cmd = list(base)
        cmd[2] = str(tmp_path / f"out.{ext}")
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        outs[ext] = Path(cmd[2])
    r = _python_restorer(model, tile, overlap)
    if tile:  # the forced tile must really tile this image
        assert r.plan_tile(*rgb.shape[:2], tile, overlap)[0] == tile
    # float: the app restores the 8-bit input scaled by 1/255 through the float API
    want_f = r.restore(rgb.astype(np.float32) * np.float32(1.0 / 255.0), tile=tile, overlap=overlap)
    got_f = np.load(outs["npy"])
    assert got_f.shape == want_f.shape and got_f.dtype == np.float32
    err = float(np.abs(got_f - want_f).max())
    assert err <= 1e-4, f"float max abs {err:.3g}"
    want_8 = r.restore(rgb, tile=tile, overlap=overlap)
    got_8 = _rgb(outs["png"])
    assert got_8.shape == want_8.shape
    assert _psnr(got_8, want_8) >= 60.0
    assert np.abs(got_8.astype(int) - want_8.astype(int)).max() <= 1  # at most rounding ties


def test_app_errors_are_one_line(build, models, tmp_path):
    app = build / "anyir-restore-cpp"
    src = ASSETS / "fallenleaf_96x96.png"
    cases = [
        ([str(src), str(tmp_path / "o.png"), "--model", str(tmp_path / "missing.onnx")], 1, "no such model file"),
        ([str(src), str(tmp_path / "o.png"), "--model", str(models["wrong"])], 1, "not an AnyIR restoration model"),
        ([str(tmp_path / "none.png"), str(tmp_path / "o.png"), "--model", str(models["onnxruntime"])], 1, "no such file"),
        ([str(src), str(tmp_path / "o.xyz"), "--model", str(models["onnxruntime"])], 2, "unsupported format"),
    ]
    for args, code, part in cases:
        p = subprocess.run([str(app)] + args, capture_output=True, text=True, timeout=120)
        assert p.returncode == code, (args, p.stderr)
        errors = [line for line in p.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and part in errors[0], p.stderr
    assert not (tmp_path / "o.png").exists()


def test_app_warns_when_the_certificate_describes_another_engine(build, models, tmp_path):
    """NAME.onnx.parity.json records the engine's SHA-256: the C++ app checks it as Python does,
    and reads a pre-0.2 NAME.parity.json only when it names this engine."""
    import json
    import shutil

    from anyir_edge import artifact

    eng = tmp_path / "m.onnx"
    shutil.copy(models["onnxruntime"], eng)
    app, src = build / "anyir-restore-cpp", ASSETS / "fallenleaf_96x96.png"
    for digest, warns in ((artifact.engine_sha256(eng), False), ("0" * 64, True)):
        artifact.certificate_path(eng).write_text(json.dumps({"engine": eng.name, "engine_sha256": digest}))
        p = subprocess.run([str(app), str(src), str(tmp_path / "o.png"), "--model", str(eng), "-q"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        warnings = [ln for ln in p.stderr.splitlines() if "warning:" in ln]
        assert len(warnings) == int(warns) and (not warns or "was made for another engine file" in warnings[0])
    artifact.certificate_path(eng).unlink()
    for named, warns in (("m.xml", False), ("m.onnx", True)):
        (tmp_path / "m.parity.json").write_text(json.dumps({"engine": named, "engine_sha256": "0" * 64}))
        p = subprocess.run([str(app), str(src), str(tmp_path / "o.png"), "--model", str(eng), "-q"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert sum("warning:" in ln for ln in p.stderr.splitlines()) == int(warns), (named, p.stderr)


def test_pte_only_build_like_an_android_app(build, models, tmp_path_factory, tmp_path):
    """The configuration docs/mobile.md gives for an Android app that runs .pte files only:
    ``ANYIR_WITH_ONNXRUNTIME=0 ANYIR_WITH_OPENVINO=0 build.sh`` builds without fetching or linking
    ONNX Runtime, lists ExecuTorch as its only backend, refuses a .onnx in one line, passes the
    unit tests' model and C ABI checks on the .pte, and restores a photo exactly as the full build."""
    if "executorch" not in models:
        pytest.skip("executorch is not installed")
    app, log = _build_sh(str(tmp_path_factory.mktemp("cpp-pte-only")), ANYIR_WITH_ONNXRUNTIME="0", ANYIR_WITH_OPENVINO="0")
    assert "building without the ONNX Runtime backend" in log
    lib = next(app.parent.glob("libanyir_runtime.so*"))
    dynamic = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    # (the executorch wheel's CMake config also links its own OpenVINO *delegate*,
    # libexecutorch_backend_openvino.so, which loads OpenVINO only if a program asks for it)
    assert "libexecutorch.so" in needed and not any(n.startswith(("libonnxruntime", "libopenvino")) for n in needed), needed
    t = subprocess.run([str(app.parent / "anyir_runtime_tests"), "--pte", str(models["executorch"])],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert t.returncode == 0, t.stdout[-3000:] + t.stderr[-3000:]
    assert "backends: executorch\n" in t.stdout
    for what in ("onnxruntime not built", "zero-size image", "NaN pixel", "overlap vs tile"):
        assert f"ok   {what}" in t.stdout, t.stdout
    assert "model executorch:" in t.stdout and "PASSED" in t.stdout
    src = ASSETS / "colorfulcups_128x128.png"  # over the program's bound of 64: tiled
    outs = []
    for exe in (app, build / "anyir-restore-cpp"):
        out = tmp_path / f"{exe.parent.name}.png"
        r = subprocess.run([str(exe), str(src), str(out), "--model", str(models["executorch"]), "--threads", "1", "-q"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(_rgb(out))
    assert np.array_equal(outs[0], outs[1])
    r = subprocess.run([str(app), str(src), str(tmp_path / "o.png"), "--model", str(models["onnxruntime"]), "-q"],
                       capture_output=True, text=True, timeout=120)
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert r.returncode != 0 and len(errors) == 1 and "without ONNX Runtime" in errors[0], r.stderr


def test_bench_profile_groups_libraries_by_side():
    """benchmarks/cpp_vs_python.py --profile: perf's per-library shares attributed to the right side."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cpp_vs_python", ROOT / "benchmarks" / "cpp_vs_python.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    g = bench.profile_groups({"libonnxruntime.so.1.32.0": 49.0, "libanyir_runtime.so.0.1.0": 0.5,
                              "onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so": 45.0,
                              "libpython3.11.so.1.0": 0.7, "_multiarray_umath.cpython-311-x86_64-linux-gnu.so": 0.4,
                              "libc.so.6": 3.0, "libopenvino.so.2026.4.1": 1.4})
    assert g == {"cpp_engine": 49.0, "cpp_wrapper": 0.5, "python_engine": 45.0, "python_wrapper": 1.1, "shared": 4.4}
