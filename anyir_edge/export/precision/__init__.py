"""Reduced precision engines (issue #8): FP16 and INT8 that keep their quality, or are refused.

FP16 (ONNX): ``onnxruntime.transformers.float16.convert_float_to_float16`` with
``keep_io_types=True`` (the engine still takes and returns float32) and a block list kept in
FP32: every node of :data:`FP16_BLOCK_OPS` (LayerNorm, softmax, reductions, the squares and
roots of variance-style statistics) plus the normalisation of q and k (the Clip / Expand /
Div chain after each ReduceL2, :func:`fp16_block_nodes`).  When the graph then misses the
parity gate, :func:`bisect_keep` searches (Polygraphy ``debug precision`` style: one binary
search for the shortest prefix, in topological order, that must stay FP32, a second for the
shortest suffix of that prefix) for a contiguous window of further nodes to keep in FP32.
The final block list is stamped into the model's metadata
(``anyir_edge.fp16_fp32_nodes``).  On a CPU, onnxruntime has few FP16 kernels and inserts
casts back to FP32 around the rest: the FP16 ONNX is a half-size artifact for GPUs / NPUs,
not a faster CPU engine.

FP16 (OpenVINO): the IR is saved with ``compress_to_fp16=True`` (weights in FP16; OpenVINO
keeps precision-sensitive subgraphs such as normalisations in FP32 itself); the CPU plugin
still computes in FP32 (``INFERENCE_PRECISION_HINT`` f32 in the backend).

INT8 (ONNX): ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel
symmetric weights in 7 bits (``reduce_range``), UINT8 activations, MinMax calibration on real images degraded with every supported
degradation (:func:`anyir_edge.export.calibration.calibration_samples`; without ``--calib`` the shipped asset crops, with a
warning), quantizing :data:`INT8_OP_TYPES`.  Three kinds of nodes stay in float by rule
(:func:`int8_rule_float_nodes`: the image's reader, the output's writer, and the consumers of
products of two activations, i.e. the gated FFN's output projections).  When parity still fails,
:func:`bisect_keep` finds further nodes to leave in float (``nodes_to_exclude``); when that fails too, dynamic
quantization (``quantize_dynamic``, INT8 weights, activations quantized at run time) is
tried.  The quantized / excluded nodes are stamped into the metadata and the certificate.
Why 7-bit weights: x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) multiply UINT8
activations by INT8 weights with ``VPMADDUBSW``, which adds pairs of products into a saturating
16-bit integer; full-range weights overflow it.  Measured on an AVX2 CPU (anyir-tiny, the
12 parity inputs): 8-bit weights 13.1 dB min parity in onnxruntime, 7-bit 31.9 dB; an 8-bit
engine certified on a VNNI CPU is therefore broken on an AVX2 one.  7 bits cost little on
VNNI CPUs and make one engine correct on every x86 CPU (ORT's quantization guide recommends
``reduce_range`` for non-VNNI machines).  The certificate records the CPU it was checked on.

INT8 (OpenVINO): NNCF post-training quantization (``nncf.quantize`` with an
``nncf.Dataset`` of the same calibration samples, ``ModelType.TRANSFORMER`` so that the
attention's softmax / normalisations are kept in float) when NNCF is installed and its IR
passes the parity gate; otherwise the INT8 (ONNX) Q/DQ graph above (7-bit weights, convolutions
only: :data:`OPENVINO_INT8_OP_TYPES`), its search judged on OpenVINO's execution, converted to
an IR (OpenVINO reads Q/DQ pairs as FakeQuantize and runs the convolutions with INT8 kernels).
On AnyIR, NNCF's IR loses parity in the CPU plugin's INT8 execution (10-25 dB, also with
``OverflowFix.ENABLE``; ``benchmarks/openvino_int8_check.py``); the 7-bit Q/DQ graph keeps it
(33 dB before the search on an AVX2 CPU, as when its FakeQuantize ops are emulated in FP32).

Gates: parity (``PARITY_GATES_DB``: FP16 45 dB, INT8 35 dB) on the parity inputs, and, when a
data root is given, the drop of PSNR against ground truth relative to the PyTorch FP32 model
on CBSD68 sigma 25 and Rain100L (:data:`QUALITY_DROP_DB`: 0.3 dB FP16, 1.0 dB INT8;
:func:`quality_gate`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..calibration import CALIB_MAX_IMAGES, CALIB_SIZE, calibration_samples, check_calib_folder  # noqa: F401
# the public names of the parts (tests and the exporter use them through this package)
from .fp16 import FP16_BLOCK_OPS, convert_fp16, fp16_block_nodes  # noqa: F401
from .gate import QUALITY_DROP_DB, QUALITY_SETS, quality_gate  # noqa: F401
from .graph import drop_cast_pairs, topo_sort  # noqa: F401
from .int8 import (INT8_OP_TYPES, MAX_FLOAT_FRACTION, SampleReader, int8_rule_float_nodes,  # noqa: F401
                   quantize_int8, quantized_nodes)
from .openvino import (NNCF_SCHEME, OPENVINO_INT8_OP_TYPES, convert_openvino, nncf_available,  # noqa: F401
                       openvino_int8_transform, openvino_quantized_nodes)
from .search import DEFAULT_MAX_EVALS, ParityProbe, bisect_keep  # noqa: F401
from ..formats import ExportError


PRECISIONS = ("fp32", "fp16", "int8")


def precision_of(half: bool | None, int8: bool | None) -> str:
    if half and int8:
        raise ExportError("--fp16 and --int8 exclude each other: choose one precision")
    return "int8" if int8 else "fp16" if half else "fp32"


def check_calib(calib, precision: str) -> None:
    """One-line :class:`ExportError`, before any work, for a ``--calib`` without ``--int8`` or
    one that is not a folder of readable images."""
    if calib is None:
        return
    if precision != "int8":
        raise ExportError("--calib is only used with --int8")
    check_calib_folder(calib)


@dataclass
class PrecisionPlan:
    """What :func:`anyir_edge.export.export` needs for a reduced-precision engine."""

    precision: str = "fp32"
    calib: str | None = None
    search: bool = True
    quality_data: str | None = None
    quality_sets: tuple[str, ...] = QUALITY_SETS
    quality_limit: int | None = None
    calib_size: int = CALIB_SIZE
    calib_max_images: int | None = CALIB_MAX_IMAGES
    samples: list = field(default_factory=list, repr=False)

