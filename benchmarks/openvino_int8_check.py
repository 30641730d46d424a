#!/usr/bin/env python
"""Where INT8 parity is lost on this CPU: the quantization parameters, or the INT8 kernels.

    .venv/bin/python benchmarks/openvino_int8_check.py    # writes benchmarks/results/openvino-int8-check.json

Quantizes the shipped model's verified FP32 ONNX three ways, with the exporter's own code and
calibration samples, and no node left in float (before any parity search):

* ``nncf``: NNCF post-training quantization (the exporter's transform; skipped without nncf);
* ``qdq-8bit``: onnxruntime static Q/DQ on the convolutions, full-range INT8 weights;
* ``qdq-7bit``: the same with 7-bit weights (``reduce_range``), what the exporter ships.

Each is run by OpenVINO's CPU plugin twice (as deployed, with INT8 kernels; and with its
low-precision transformations off, ``LP_TRANSFORMS_MODE=NO``, an internal property: the
FakeQuantize ops emulated in FP32, i.e. what the quantization parameters give when computed
exactly), and the Q/DQ graphs by onnxruntime too.  Parity is PSNR against the FP32 ONNX output
on every calibration sample.  A large gap between kernels and emulation is lost in the
kernels' arithmetic: on CPUs without VNNI, u8 x s8 products are summed in pairs into a
saturating 16-bit integer (VPMADDUBSW), which full-range weights overflow and 7-bit weights
cannot.  The result records the CPU's INT8 ISA flags: on a VNNI CPU the gap should close.
"""
from __future__ import annotations

import argparse
import shutil
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
    import onnxruntime as ort
    import openvino as ov

    from anyir_edge.export import export
    from anyir_edge.export.openvino_export import convert
    from anyir_edge.export.parity import psnr
    from anyir_edge.export.precision import (OPENVINO_INT8_OP_TYPES, calibration_samples, nncf_available,
                                             openvino_int8_transform, quantize_int8)
    from anyir_edge.fsutil import write_json
    from anyir_edge.runtime.backends import cpu_info

    tmp = Path(tempfile.mkdtemp(prefix="anyir-ov8-"))
    try:
        onnx_path = export(args.model, to="onnx", output=str(tmp), log=lambda m: None).path
        samples, desc = calibration_samples(None, log=lambda m: None)
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        refs = [sess.run(None, {sess.get_inputs()[0].name: s})[0] for s in samples]

        def score(run) -> list[float]:
            return [round(psnr(np.clip(run(s), 0, 1), np.clip(r, 0, 1)), 2) for s, r in zip(samples, refs)]

        graphs = {}
        if nncf_available():
            graphs["nncf"] = openvino_int8_transform(samples)(ov.convert_model(str(onnx_path)))
        rows = {}
        for bits in (8, 7):
            qdq = tmp / f"qdq{bits}.onnx"
            quantize_int8(onnx_path, qdq, samples, op_types=OPENVINO_INT8_OP_TYPES, reduce_range=bits == 7,
                          rules=False)  # every Conv quantized: this check is about the kernels
            qs = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
            rows[f"qdq-{bits}bit/onnxruntime"] = score(lambda s, qs=qs: qs.run(None, {qs.get_inputs()[0].name: s})[0])
            xml = tmp / f"qdq{bits}.xml"
            convert(qdq, xml, {})
            graphs[f"qdq-{bits}bit"] = str(xml)
        core = ov.Core()
        for name, graph in graphs.items():
            for label, cfg in (("int8_kernels", {}), ("fakequantize_emulated_fp32", {"LP_TRANSFORMS_MODE": "NO"})):
                c = core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **cfg})
                rows[f"{name}/openvino_{label}"] = score(lambda s, c=c: c.create_infer_request().infer({0: s})[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    versions = {"openvino": ov.__version__, "onnxruntime": ort.__version__}
    if nncf_available():
        import nncf

        versions["nncf"] = nncf.__version__
    result = {"what": __doc__.split("\n\n")[0], "model": args.model, "calibration": desc, "host_cpu": cpu_info(),
              "versions": versions, "date": time.strftime("%Y-%m-%d"),
              "command": "python benchmarks/openvino_int8_check.py",
              "parity_db_min": {k: min(v) for k, v in rows.items()},
              "parity_db_median": {k: round(float(np.median(v)), 2) for k, v in rows.items()},
              "parity_db_per_sample": rows}
    write_json(args.out, result)
    for k in rows:
        print(f"{k:50s} min {result['parity_db_min'][k]:6.2f}  median {result['parity_db_median'][k]:6.2f} dB")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
