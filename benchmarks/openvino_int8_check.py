#!/usr/bin/env python
"""Why `anyir-export --to openvino --int8` is refused: NNCF's quantization vs OpenVINO's INT8 execution.

    .venv/bin/python benchmarks/openvino_int8_check.py            # writes benchmarks/results/openvino-int8-check.json

Quantizes the shipped model's verified FP32 ONNX with the exporter's own NNCF transform (no
node left in float) and the exporter's calibration samples, then measures parity (PSNR
against the ONNX FP32 output, per calibration image) of the same IR compiled twice on CPU:
as deployed (INT8 kernels), and with the CPU plugin's low-precision transformations off
(``LP_TRANSFORMS_MODE=NO``, an internal OpenVINO property: FakeQuantize emulated in FP32, i.e.
what NNCF's quantization parameters give when executed exactly).  A large gap means the loss
comes from the plugin's INT8 execution of this graph, not from the quantization parameters.
Needs openvino and nncf (``pip install anyir-edge[int8]``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="anyir-tiny")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "openvino-int8-check.json")
    args = ap.parse_args(argv)
    import nncf
    import onnxruntime as ort
    import openvino as ov

    from anyir_edge.export import export
    from anyir_edge.export.parity import psnr
    from anyir_edge.export.precision import calibration_samples, openvino_int8_transform
    from anyir_edge.fsutil import write_json

    tmp = Path(tempfile.mkdtemp(prefix="anyir-ov8-"))
    onnx_path = export(args.model, to="onnx", output=str(tmp), log=lambda m: None).path
    samples, desc = calibration_samples(None, log=lambda m: None)
    q = openvino_int8_transform(samples)(ov.convert_model(str(onnx_path)))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    refs = [sess.run(None, {sess.get_inputs()[0].name: s})[0] for s in samples]
    core = ov.Core()
    rows = {}
    for label, cfg in (("int8_kernels", {}), ("fakequantize_emulated_fp32", {"LP_TRANSFORMS_MODE": "NO"})):
        c = core.compile_model(q, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **cfg})
        rows[label] = [round(psnr(np.clip(c(s)[0], 0, 1), np.clip(r, 0, 1)), 2) for s, r in zip(samples, refs)]
    result = {"what": __doc__.split("\n\n")[0], "model": args.model, "calibration": desc,
              "openvino": ov.__version__, "nncf": nncf.__version__, "date": time.strftime("%Y-%m-%d"),
              "command": "python benchmarks/openvino_int8_check.py",
              "parity_db_per_sample": rows,
              "parity_db_min": {k: min(v) for k, v in rows.items()},
              "parity_db_median": {k: round(float(np.median(v)), 2) for k, v in rows.items()}}
    write_json(args.out, result)
    print({k: result[k] for k in ("parity_db_min", "parity_db_median")})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
