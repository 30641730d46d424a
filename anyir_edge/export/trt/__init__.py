"""TensorRT for AnyIR, split as Polygraphy splits it: build settings (:mod:`.settings`), a
compatibility check that runs anywhere (:mod:`.check`), the FP32-layer constraints of 10.x
(:mod:`.constraints`), the INT8 entropy calibrator (:mod:`.calibrator`) and the engine builder
(:mod:`.build`, TensorRT 10.x / 11.x Python API).  The runtime side (the engine runner and the
environment comparison) lives in :mod:`anyir_edge.runtime.backends.tensorrt_backend`.

Nothing here imports ``tensorrt`` at module level: the settings validation, the ONNX
compatibility check (:func:`check_onnx`), the FP32-layer selection (:func:`keep_fp32`), the
calibration feeder (:class:`CalibrationFeeder`, fed by :mod:`anyir_edge.export.calibration`) and the engine/environment
comparison (:func:`engine_compatibility`) are pure Python and are tested on machines without
TensorRT or a GPU.  :func:`build_engine` and the calibrator class need TensorRT 10.x and a
CUDA build of torch (device buffers are torch CUDA tensors).

API used (TensorRT 10.x Python, looked up in NVIDIA's API reference and migration guides):
``trt.Logger``, ``trt.Builder``, ``builder.create_network(0)`` (10.0+: networks are always
explicit batch, the EXPLICIT_BATCH flag is deprecated and ignored), ``trt.OnnxParser(...).parse``,
``builder.create_builder_config()``, ``config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
bytes)``, ``builder.create_optimization_profile()`` / ``profile.set_shape`` /
``config.add_optimization_profile``, ``config.create_timing_cache`` / ``set_timing_cache`` /
``get_timing_cache().serialize()``, ``trt.BuilderFlag.FP16 / INT8 / OBEY_PRECISION_CONSTRAINTS``,
``layer.precision`` / ``layer.set_output_type``, ``trt.IInt8EntropyCalibrator2``,
``config.int8_calibrator`` / ``config.set_calibration_profile``,
``builder.build_serialized_network``.

TensorRT 11.x removed weak typing: ``BuilderFlag.FP16``/``INT8``, the precision-constraint
flags and ``IBuilderConfig.int8_calibrator`` are gone (every network is strongly typed; FP16 via
a typed graph such as ModelOpt AutoCast writes, INT8 via explicit Q/DQ nodes).  Implicit INT8
calibration (this module's calibrator) is already deprecated in 10.x.  On TensorRT 11 the
exporter therefore puts the precision into the ONNX graph first (:func:`typed_onnx`): FP16 is
the ONNX Runtime FP16 graph (float16 weights and activations, LayerNorm, softmax, reductions
and the q/k normalisation kept in FP32 with Casts: the same block list as the 10.x layer
constraints), INT8 is the ONNX Runtime static Q/DQ graph with symmetric INT8 activations
(TensorRT accepts only zero points of 0), Conv only, calibrated on the same degraded crops.
The builder then creates the network with ``1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)``
(required for typed graphs on 10.x, accepted and ignored on 11.x) and sets no precision flag.
Not verified on a GPU.
"""
from __future__ import annotations

from ...artifact import INPUT_NAME, OUTPUT_NAME, read_sidecar, sidecar_path  # noqa: F401  (the contract's)
from ...runtime.backends.tensorrt_backend import current_environment, engine_compatibility  # noqa: F401
from .settings import (  # noqa: F401
    DEFAULT_OPT_HW, DEFAULT_MAX_HW, DEFAULT_WORKSPACE_MB, SIDECAR, CALIB_CACHE, Shape, parse_shape, TrtSettings,
    validate_settings, ort_provider_options,
)
from .check import (  # noqa: F401
    OPS_TABLE, load_op_table, resolve_version, Problem, CheckReport, check_onnx,
)
from .constraints import (  # noqa: F401
    FP32_LAYER_TYPES, FP32_NAME_HINTS, NEVER_FP32_TYPES, keep_fp32, apply_precision_constraints,
)
from .calibrator import (  # noqa: F401
    CalibrationFeeder, entropy_calibrator,
)
from .build import (  # noqa: F401
    missing_requirements, needs_typed_graph, typed_onnx, build_engine, write_sidecar, export_onnx_for_trt,
    check_only,
)
