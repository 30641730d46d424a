#!/usr/bin/env python
"""C++ runtime vs Python runtime latency, same engine file, same backend, same threads.

    .venv/bin/python benchmarks/cpp_vs_python.py                 # builds if needed, writes benchmarks/results/cpp_vs_python.{json,md}
    .venv/bin/python benchmarks/cpp_vs_python.py --onnx M.onnx --xml M.xml --sizes 224 512 --runs 7

Each measurement is one ``restore`` of an 8-bit RGB image (conversion, padding, engine run,
conversion back), excluding model loading.  C++: ``anyir_restore_u8`` of the built
libanyir_runtime.so called through its C ABI with ctypes (one foreign call per restore).
Python: ``anyir_edge.runtime.Restorer.restore``.  Both run in this process, alternating run by
run, so load from other jobs on a shared machine hits both sides alike; the ratio is the median
of the per-pair ratios.  The two outputs are checked to be identical first.  Without
--onnx/--xml, the default shipped model (or --model) is exported to a temp dir with anyir-export's code.
(``anyir-restore-cpp --bench N`` times the app itself, one process per call.)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from anyir_edge import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "runtimes" / "cpp"


def export_models(d: Path, model: str = DEFAULT_MODEL) -> tuple[Path, Path | None]:
    """``model`` exported and verified by the toolkit's own exporter (ONNX, and OpenVINO when installed)."""
    from anyir_edge.export import export

    quiet = dict(output=str(d), log=lambda m: None)
    onnx_path = export(model, to="onnx", **quiet).path
    try:
        import openvino  # noqa: F401
    except ImportError:
        return onnx_path, None
    return onnx_path, export(model, to="openvino", **quiet).path


class CApi:
    """The C ABI (anyir/anyir.h) through ctypes: the C++ restore timed in this same process."""

    def __init__(self, path: Path):
        import ctypes as C

        self.C = C
        self.lib = lib = C.CDLL(str(path))
        lib.anyir_open.argtypes = [C.c_char_p, C.c_void_p, C.POINTER(C.c_void_p)]
        lib.anyir_restore_u8.argtypes = [C.c_void_p, C.c_void_p, C.c_int, C.c_int, C.c_size_t, C.c_void_p, C.c_size_t]
        lib.anyir_close.argtypes = [C.c_void_p]
        lib.anyir_last_error.restype = C.c_char_p

    def open(self, model: Path, threads: int):
        C = self.C

        class Options(C.Structure):
            _fields_ = [("backend", C.c_int), ("device", C.c_char_p), ("threads", C.c_int), ("tile", C.c_int),
                        ("overlap", C.c_int), ("memory_limit_mb", C.c_double)]

        o = Options()
        self.lib.anyir_options_init(C.byref(o))
        o.threads = threads
        h = C.c_void_p()
        if self.lib.anyir_open(str(model).encode(), C.byref(o), C.byref(h)) != 0:
            raise RuntimeError(self.lib.anyir_last_error().decode())
        return h

    def restore(self, h, rgb, out):
        hh, ww = rgb.shape[:2]
        if self.lib.anyir_restore_u8(h, rgb.ctypes.data, ww, hh, rgb.strides[0], out.ctypes.data, out.strides[0]) != 0:
            raise RuntimeError(self.lib.anyir_last_error().decode())

    def close(self, h):
        self.lib.anyir_close(h)


def perf_profile(work) -> dict | None:
    """Share of CPU samples by shared library while ``work()`` runs in this process.

    ``perf record -e cpu-clock -p PID`` (software clock: works in VMs without hardware counters)
    is attached to this process for the duration of ``work``; ``perf report --sort dso`` gives
    percentages per library.  None when perf is missing or not permitted.
    """
    import shutil
    import signal

    if not shutil.which("perf"):
        return None
    with tempfile.TemporaryDirectory(prefix="anyir-perf-") as d:
        data = Path(d) / "perf.data"
        rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-p", str(os.getpid()),
                                "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # let perf attach
        if rec.poll() is not None:
            return None
        try:
            work()
        finally:
            rec.send_signal(signal.SIGINT)
            rec.wait(timeout=60)
        rep = subprocess.run(["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-q"],
                             capture_output=True, text=True)
    shares = {}
    for line in rep.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%"):
            shares[parts[1]] = shares.get(parts[1], 0.0) + float(parts[0].rstrip("%"))
    return shares or None


def profile_groups(shares: dict[str, float]) -> dict[str, float]:
    """Library shares grouped by side: which engine build and which wrapper the time went to."""
    groups = {"cpp_engine": 0.0, "cpp_wrapper": 0.0, "python_engine": 0.0, "python_wrapper": 0.0, "shared": 0.0}
    for dso, pct in shares.items():
        if dso.startswith("libonnxruntime.so"):
            key = "cpp_engine"
        elif dso.startswith("libanyir_runtime"):
            key = "cpp_wrapper"
        elif dso.startswith("onnxruntime_pybind11_state"):
            key = "python_engine"
        elif dso.startswith(("libpython", "_multiarray", "python", "_")) or "cpython" in dso:
            key = "python_wrapper"
        else:
            key = "shared"  # libc (memcpy), libstdc++, kernel, libopenvino (one library serves both sides)
        groups[key] += pct
    return {k: round(v, 2) for k, v in groups.items()}


def make_image(size: int, path: Path):
    import cv2

    src = cv2.imread(str(ROOT / "anyir_edge" / "assets" / "kite_251x333.png"), cv2.IMREAD_COLOR)
    if size <= min(src.shape[:2]):
        img = src[:size, :size]
    else:
        img = cv2.resize(src, (size, size), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), img)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", type=Path)
    ap.add_argument("--xml", type=Path)
    ap.add_argument("--app", type=Path, default=CPP / "build" / "anyir-restore-cpp")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1, help="untimed restores per side first")
    ap.add_argument("--runs", type=int, default=7, help="timed restores per side, C++ and Python alternating")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="shipped name or checkpoint exported when --onnx is not given")
    ap.add_argument("--machine-note", default="", help="appended to the machine description (e.g. 'quiet')")
    ap.add_argument("--profile", action="store_true",
                    help="also attach perf (if installed) to the ONNX Runtime runs at the first size: share of CPU "
                         "time in each side's engine library and wrapper")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpp_vs_python")
    args = ap.parse_args(argv)

    if not args.app.exists():
        subprocess.run(["bash", str(CPP / "build.sh")], check=True, env=dict(os.environ, PYTHON=sys.executable))
    from anyir_edge.runtime import Restorer

    tmp = Path(tempfile.mkdtemp(prefix="anyir-bench-"))
    onnx_path, xml = args.onnx, args.xml
    if onnx_path is None:
        onnx_path, xml_made = export_models(tmp, args.model)
        xml = xml or xml_made
    engines = [("onnxruntime", onnx_path)] + ([("openvino", xml)] if xml else [])
    lib = CApi(args.app.parent / "libanyir_runtime.so")
    rows, profile = [], None
    for backend, model in engines:
        py = Restorer.open(model, threads=args.threads)
        cpp = lib.open(model, args.threads)
        for size in args.sizes:
            rgb = make_image(size, tmp / f"in_{size}.png")
            out = np.empty_like(rgb)
            for _ in range(args.warmup):
                lib.restore(cpp, rgb, out)
                py.restore(rgb)
            assert np.array_equal(out, py.restore(rgb)), "C++ and Python outputs differ"
            cpp_t, py_t = [], []
            for k in range(args.runs):  # alternate, starting side alternating too
                order = ("cpp", "py") if k % 2 == 0 else ("py", "cpp")
                for side in order:
                    t0 = time.perf_counter()
                    if side == "cpp":
                        lib.restore(cpp, rgb, out)
                    else:
                        py.restore(rgb)
                    (cpp_t if side == "cpp" else py_t).append((time.perf_counter() - t0) * 1e3)
            pair = [p / c for p, c in zip(py_t, cpp_t)]
            row = {"backend": backend, "size": size, "threads": args.threads, "runs_per_side": args.runs,
                   "cpp_median_ms": round(statistics.median(cpp_t), 2), "python_median_ms": round(statistics.median(py_t), 2),
                   "cpp_min_ms": round(min(cpp_t), 2), "python_min_ms": round(min(py_t), 2),
                   "python_over_cpp": round(statistics.median(pair), 3),
                   "python_over_cpp_of_minimums": round(min(py_t) / min(cpp_t), 3)}
            if args.profile and backend == "onnxruntime" and size == args.sizes[0]:
                def work():
                    for _ in range(args.runs):
                        lib.restore(cpp, rgb, out)
                        py.restore(rgb)

                shares = perf_profile(work)
                if shares:
                    profile = {"backend": backend, "size": size, "groups_percent": profile_groups(shares),
                               "libraries_percent": {k: round(v, 2) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])[:8]}}
                    print(json.dumps(profile), flush=True)
            rows.append(row)
            print(json.dumps(row), flush=True)
        lib.close(cpp)
        py.close()
    import onnxruntime

    try:
        import openvino

        ov_version = openvino.__version__
    except ImportError:
        ov_version = None
    result = {
        "what": "C++ runtime (libanyir_runtime anyir_restore_u8) vs Python runtime (Restorer.restore) latency of one 8-bit RGB restore",
        "model": str(args.onnx) if args.onnx else f"{args.model} (exported with anyir-export's code)",
        "command": "python benchmarks/cpp_vs_python.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "method": f"{args.warmup} warm-up + {args.runs} timed restores per side in one process, C++ (C ABI via ctypes) "
                  "and Python alternating run by run; ratio = median of the per-pair ratios Python / C++",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs" + (f", {args.machine_note}" if args.machine_note else ""),
        "onnxruntime": onnxruntime.__version__, "openvino": ov_version,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
        "profile": profile,
    }
    from anyir_edge.fsutil import atomic_write, write_json

    write_json(args.out.with_suffix(".json"), result)
    md = [f"# C++ vs Python runtime latency ({result['date']})", "",
          f"{result['what']}. Model: {result['model']}. {result['method']}. Machine: {result['machine']}; "
          f"onnxruntime {result['onnxruntime']}, openvino {result['openvino']}.", "",
          f"Reproduce: `{result['command']}` (builds runtimes/cpp first if needed).", "",
          "| backend | size | threads | C++ median ms | Python median ms | Python / C++ |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['backend']} | {r['size']}x{r['size']} | {r['threads']} | {r['cpp_median_ms']} | "
                  f"{r['python_median_ms']} | {r['python_over_cpp']} |")
    if profile:
        g = profile["groups_percent"]
        md += ["", f"CPU samples (perf, cpu-clock) over {args.runs} alternating ONNX Runtime restores per side at "
               f"{profile['size']}x{profile['size']}: C++ engine library {g['cpp_engine']}%, C++ wrapper "
               f"(libanyir_runtime) {g['cpp_wrapper']}%, Python engine library {g['python_engine']}%, Python "
               f"wrapper (interpreter, numpy) {g['python_wrapper']}%, shared libraries (libc, libstdc++, kernel) "
               f"{g['shared']}%. The onnxruntime wheel ships two separately linked builds of ONNX Runtime: the "
               "Python module (onnxruntime_pybind11_state) and libonnxruntime.so, which C/C++ programs link."]
    md += ["", "Python / C++ > 1 means the C++ runtime is faster. Both sides use the same settings. OpenVINO: "
           "both call the openvino wheel's libopenvino.so, so a difference is the wrapper (image conversion, "
           "padding, tensor copies, interpreter). ONNX Runtime: Python runs the build inside its extension "
           "module and C++ the wheel's libonnxruntime.so (same version, separately linked, stripped), so a "
           "difference can also come from the two engine binaries; the profile above separates the two."]
    atomic_write(args.out.with_suffix(".md"), "\n".join(md) + "\n")
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
