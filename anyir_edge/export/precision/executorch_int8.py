"""INT8 ExecuTorch programs (:mod:`anyir_edge.export.precision.pt2e_int8`): each quantized
method exported again and all lowered together with the XNNPACK partitioner.  A convolution
XNNPACK does not take in INT8 (it would fall back to a portable kernel that this ExecuTorch
cannot even serialise) is found after lowering and left float.

Measured (AMD EPYC AVX2, 2 cores, 2026-12-03; anyir-tiny EMA weights at iteration ~8800,
``--sizes 224,512``, built-in calibration): 345 of 395 convolutions INT8, 50 float by rule;
parity 37.5 dB min / 43.9 dB mean on the 12 certificate inputs (gate 35); XNNPACK takes both
methods whole (2 partitions, 0 ops outside); 3.17 MB against 6.31 MB in FP32.  On this x86 CPU
it is no faster than the FP32 static program (0.99-1.01x at 1 thread, 0.99x at 512 / 2
threads, 1.31x slower at 224 / 2 threads): XNNPACK's INT8 convolutions pay on ARM phones, which
we cannot time here.  The export took 1472 s (two quantized lowerings, calibration at 512).
"""
from __future__ import annotations

import torch

from ... import artifact
from ..formats import ExportError
from .pt2e_int8 import Pt2eQuantizer, conv_key


def declined_convs(edge_gm) -> list[str]:
    """Quantized convolutions the XNNPACK partitioner left outside its delegate (their weights are
    still dequantized in the lowered graph), by :func:`~.pt2e_int8.conv_key`."""
    out = []
    for n in edge_gm.graph.nodes:
        if n.op == "call_function" and "convolution" in str(n.target):
            w = n.args[1] if len(n.args) > 1 else None
            if isinstance(w, torch.fx.Node) and "dequantize" in str(w.target):
                out.append(conv_key(n))
    return list(dict.fromkeys(out))


class ExecuTorchQuantizer(Pt2eQuantizer):
    backend = "XNNPACK"
    suffix = ".pte"
    report_key = "delegation"

    def build(self, float_convs: list[str], extra_meta: dict[str, str] | None = None) -> tuple[bytes, dict]:
        """(``.pte`` bytes, delegation report with ``declined``) with ``float_convs`` left float."""
        from torch.export import export

        from ..executorch_export import delegation_report
        from ..mobile_export import quiet

        with quiet():  # torchao's import-time log lines
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

        keep = set(float_convs)
        meta = dict(self.meta, **(extra_meta or {}))
        meta_tensor = torch.tensor(list(artifact.encode_pte_metadata(meta)), dtype=torch.uint8)
        try:
            programs = {}
            for name in self.programs:
                m = self.quantized(name, keep)
                with quiet():
                    programs[name] = export(m, (torch.zeros(1, 3, *self.sizes[name]),))
            self.log(f"  lowering {len(programs)} quantized method(s) to XNNPACK ...")
            with quiet():
                edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()],
                                                   constant_methods={artifact.PTE_METADATA_METHOD: meta_tensor})
                gms = [edge.exported_program(name).graph_module for name in programs]
                report = delegation_report(gms)
                report["declined"] = list(dict.fromkeys(c for gm in gms for c in declined_convs(gm)))
                if report["declined"]:
                    return b"", report
                return edge.to_executorch().buffer, report
        except Exception as e:
            from ...errors import first_line

            raise ExportError(f"ExecuTorch INT8 quantization failed ({first_line(e)})") from None
