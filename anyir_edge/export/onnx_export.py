"""PyTorch -> ONNX for AnyIR: the unpadded network (``forward_padded``), dynamic batch/H/W.

``fold`` and ``matmul`` go through the TorchScript exporter (``dynamo=False``); ``dft``
keeps ``torch.fft`` and goes through the dynamo exporter, which emits ONNX DFT ops.
The graph's input is ``image`` and its output ``restored``: float32 NCHW RGB in [0, 1],
H and W multiples of the size multiple (the runtime pads; see ``anyir_edge.pad``).
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings

import torch

from ..errors import first_line
from ..models.checkpoint import weights_sha256
from .formats import ExportError

from .. import artifact
from ..artifact import INPUT_NAME, OUTPUT_NAME, PAD_RULE  # noqa: F401  (re-exported: the contract's names)

META_PREFIX = artifact.PREFIX
# example input: batch 2 and H, W != each other and != 1 so no dimension is specialised
SAMPLE_SHAPE = (2, 3, 64, 72)


class _Padded(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_padded(x)


class _Whole(torch.nn.Module):
    """The model with its padding and cropping in the graph (``--pad-in-graph``): any H, W >= 1,
    padded by :func:`anyir_edge.models.base.pad_indices` (the same rule as the runtime's) with
    shape arithmetic the exporter keeps dynamic, then ``forward_padded``, then cropped back."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        from ..models.base import pad_indices

        shape = torch._shape_as_tensor(x)
        h, w = shape[2], shape[3]
        m = self.model.size_multiple
        xp = x.index_select(2, pad_indices(h, m)).index_select(3, pad_indices(w, m))
        return self.model.forward_padded(xp)[:, :, :h, :w]


def metadata(model, fft: str, exporter: str, opset: int | None, source: str | None,
             pad_in_graph: bool = False) -> dict[str, str]:
    """The engine's metadata (:mod:`anyir_edge.artifact`).  With the padding in the graph the
    engine takes any H and W: its ``size_multiple`` is 1, so runtimes do not pad.  ``opset``
    None: a format that is not ONNX (no opset key)."""
    from .. import __version__

    io = artifact.describe_io(1 if pad_in_graph else model.size_multiple)
    if pad_in_graph:
        io[artifact.PAD] = f"in the graph: {artifact.PAD_RULE.replace('size_multiple', str(model.size_multiple))}"
    meta = {
        artifact.FORMAT: "1",
        artifact.NAME: model.name or type(model).arch,
        artifact.ARCH: type(model).arch,
        artifact.CONFIG: json.dumps(model.config.to_dict()),
        **io,
        artifact.FFT: fft,
        artifact.EXPORTER: exporter,
        artifact.OPSET: str(opset),
        artifact.SOURCE: source or "",
        artifact.WEIGHTS_SHA256: weights_sha256(model),
        artifact.VERSION: __version__,
        artifact.TORCH_VERSION: torch.__version__.split("+")[0],
    }
    if opset is None:
        del meta[artifact.OPSET]
    return meta


def trace(model, path: str, fft: str, opset: int | None = None, dynamic: bool = True,
          pad_in_graph: bool = False) -> tuple[str, int]:
    """Write the raw exported graph of ``model`` in its architecture's deploy form
    (:attr:`anyir_edge.models.base.Architecture.deploy`) to ``path``; returns (exporter, opset)."""
    from ..models import get_architecture

    model = get_architecture(model).deploy_copy(model).float().cpu().eval()
    x = torch.rand(*SAMPLE_SHAPE)
    if fft in ("fold", "matmul"):
        opset = opset or 17
        model.set_fft_mode(fft)
        axes = {0: "batch", 2: "height", 3: "width"}
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    (_Whole if pad_in_graph else _Padded)(model), (x,), path, dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if dynamic else None,
                    do_constant_folding=True,
                )
            except Exception as e:
                raise ExportError(f"TorchScript ONNX export failed ({first_line(e)})") from None
        return "torchscript", opset
    if fft == "dft":
        if pad_in_graph:
            raise ExportError("--pad-in-graph works with --fft fold or matmul (the dynamo exporter's shapes are "
                              "multiples of the size multiple)")
        opset = opset or 18
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter's graph builder)
        except ImportError:
            raise ExportError("--fft dft needs onnxscript for the dynamo exporter: pip install anyir-edge[dft]") from None
        model.set_fft_mode("fft")
        from torch.export import Dim

        # H and W are 8 * k; k >= 2 because torch.export specialises sizes 0 and 1
        m = model.size_multiple
        shapes = {"x": {0: Dim("batch", min=1, max=1024), 2: m * Dim("h_blocks", min=2, max=4096),
                        3: m * Dim("w_blocks", min=2, max=4096)}} if dynamic else None
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), quiet_logger("torch.onnx"):
            warnings.simplefilter("ignore")
            try:
                prog = torch.onnx.export(
                    _Padded(model), (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME], dynamic_shapes=shapes, verbose=False, report=False,
                )
                prog.save(path)
            except Exception as e:
                raise ExportError(f"dynamo ONNX export (--fft dft) failed ({first_line(e)})") from None
        return "dynamo", opset
    raise ExportError(f"unknown fft strategy {fft!r}")


@contextlib.contextmanager
def quiet_logger(name: str | None = None):
    """Raise logger ``name`` (None: the root logger) to ERROR inside the block."""
    import logging

    lg = logging.getLogger(name)
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(old)


def simplify(model_proto, log=None):
    """onnxsim, else onnxslim, else the graph unchanged; returns (model, tool or None)."""
    import onnx

    try:
        import onnxsim

        with contextlib.redirect_stdout(io.StringIO()):
            simplified, ok = onnxsim.simplify(model_proto, check_n=0)
        if ok:
            onnx.checker.check_model(simplified)
            return simplified, "onnxsim"
        reason = "onnxsim's check failed"
    except Exception as e:  # onnxsim raises RuntimeError/ValueError/...; any failure falls back
        reason = f"onnxsim failed: {first_line(e)}"
    try:
        import onnxslim

        with contextlib.redirect_stdout(io.StringIO()):
            slim = onnxslim.slim(model_proto)
        onnx.checker.check_model(slim)
        if log:
            log(f"warning: {reason}; simplified with onnxslim instead")
        return slim, "onnxslim"
    except Exception as e:
        if log:
            log(f"warning: {reason}; onnxslim failed too ({first_line(e)}); keeping the graph unsimplified")
        return model_proto, None


def finalize(path: str, meta: dict[str, str], do_simplify: bool = True, log=None) -> dict:
    """Check, simplify, stamp metadata and re-check the ONNX file at ``path`` (in place)."""
    import onnx

    model = onnx.load(path)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ExportError(f"onnx.checker rejects the exported graph ({first_line(e)})") from None
    tool = None
    if do_simplify:
        model, tool = simplify(model, log)
    meta = {**meta, artifact.SIMPLIFIER: tool or "none"}
    artifact.write_onnx(model, meta)
    model.producer_name = "anyir-edge"
    model.doc_string = (f"image restoration ({meta.get(artifact.NAME)}, {meta.get(artifact.ARCH)}): input '{INPUT_NAME}' float32 "
                        f"NCHW RGB [0,1], H and W multiples of {meta.get(artifact.SIZE_MULTIPLE)}; "
                        "output 'restored' same shape")
    onnx.checker.check_model(model)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    onnx.save(model, path)
    return {"simplifier": tool, "input_dims": dims, "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))}
