"""Core ML: ``.mlpackage`` ML programs on Apple's Core ML framework, through coremltools' Python
API (extra ``[coreml]``; macOS only: **not verified on macOS**, written against coremltools' documented
API, ``coremltools.models.MLModel(path, compute_units=...).predict({...})``).

A package from ``anyir-export --to coreml`` takes one float32 image ``image`` [1, 3, H, W] with H
and W multiples of its size multiple between the size multiple and its bound (``anyir_edge.max_side``,
also the input's Core ML size range) and returns ``restored``; its metadata are the model's
``user_defined_metadata``.  This backend runs a batch image by image and
:class:`~anyir_edge.runtime.Restorer` tiles images larger than the bound.

Core ML runs only on Apple platforms: elsewhere :meth:`CoreMLBackend.is_available` says so and
opening a package is refused in one line (the exporter converts and checks packages on Linux but
cannot run them).  On a Mac, ``import coremltools`` also imports torch when it is installed
(coremltools' converters do); this module itself imports neither at import time.

``device``: None / "all" (Core ML chooses: CPU, GPU, Neural Engine), "cpu" (CPU only; what
:func:`anyir_edge.export.verify` asks for a parity certificate), "gpu" (CPU and GPU), "ane" / "npu"
(CPU and Neural Engine).  ``threads`` is Core ML's to decide and is ignored.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ... import artifact
from ...errors import EngineError, first_line
from .base import Backend, check_signature

#: ``device`` -> coremltools.ComputeUnit member
COMPUTE_UNITS = {"all": "ALL", "cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE", "npu": "CPU_AND_NE"}


class CoreMLBackend(Backend):
    """A ``.mlpackage`` on Core ML (macOS), batch 1 per call (a batch runs image by image).
    Not verified on macOS (no Mac where it was written)."""

    kind = "coreml"
    aliases = ("mlpackage",)
    suffixes = (".mlpackage",)
    export_target = "coreml"
    requires = ("coremltools",)
    install = "pip install anyir-edge[coreml]"

    @classmethod
    def is_available(cls) -> str | None:
        if sys.platform != "darwin":
            return (f"Core ML runs only on macOS (and iOS/iPadOS apps), not on {sys.platform}: run the .mlpackage "
                    "on a Mac (anyir-export converted and structurally checked it here)")
        return super().is_available()

    def __init__(self, path: str, device: str | None = None, threads: int | None = None):
        path = str(path)
        why = self.is_available()
        if why:
            raise EngineError(f"{path}: {why}")
        if not Path(path).is_dir():
            raise EngineError(f"{path}: no such Core ML package (an .mlpackage is a folder)")
        unit = COMPUTE_UNITS.get((device or "all").lower())
        if unit is None:
            raise EngineError(f"the coreml backend's devices are {', '.join(COMPUTE_UNITS)}, not {device!r}")
        try:
            import coremltools as ct
        except ImportError:
            raise EngineError(f"coremltools is not installed: {self.install}") from None
        try:
            self.model = ct.models.MLModel(path, compute_units=getattr(ct.ComputeUnit, unit))
            spec = self.model.get_spec()
        except Exception as e:
            raise EngineError(f"{path}: Core ML cannot load it ({first_line(e)})") from None
        self.compute_units = unit
        meta = dict(spec.description.metadata.userDefined)
        from coremltools.proto import FeatureTypes_pb2

        def sig(feature):
            arr = feature.type.multiArrayType
            if feature.type.WhichOneof("Type") != "multiArrayType":
                return (feature.name, feature.type.WhichOneof("Type"), None)
            dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower()
            ranges = list(arr.shapeRange.sizeRanges)
            if ranges:  # flexible: a dimension whose range is one value is fixed
                dims = [int(r.lowerBound) if r.lowerBound == r.upperBound else None for r in ranges]
            else:
                dims = [int(s) for s in arr.shape] or None
            return (feature.name, dtype, dims)

        ins = [sig(f) for f in spec.description.input]
        outs = [sig(f) for f in spec.description.output]
        check_signature(path, ins, outs, meta)
        self.input_name, self.output_name = ins[0][0], outs[0][0]
        bound = meta.get(artifact.MAX_SIDE)
        if bound is not None and not (bound.isdigit() and int(bound) > 0):
            raise EngineError(f"{path}: bad {artifact.MAX_SIDE} metadata {bound!r}")
        if bound is None:  # a package from elsewhere: its input's size range
            ranges = list(spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges)
            uppers = [int(r.upperBound) for r in ranges[2:4] if r.upperBound > 0]
            bound = str(min(uppers)) if len(uppers) == 2 else None
        self.max_side = int(bound) if bound else None
        super().__init__(path, meta)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._run_each(x, lambda one: self.model.predict({self.input_name: one})[self.output_name], "Core ML")

    def describe(self) -> str:
        bound = f", H and W <= {self.max_side}" if self.max_side else ""
        return f"coreml ({self.compute_units}{bound}; not verified on macOS)"


BACKEND = CoreMLBackend
