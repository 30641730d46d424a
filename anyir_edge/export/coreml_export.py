"""PyTorch -> Core ML (``.mlpackage``, an ML program) for iPhones, iPads and Macs.

The network is traced in its architecture's *mobile* deploy form exactly as for ExecuTorch
(:func:`anyir_edge.export.mobile_export.bounded_export`: batch 1, H and W dynamic multiples of
the size multiple up to ``max_side``), brought to the ATEN dialect coremltools takes
(``run_decompositions({})``) and converted with ``coremltools.convert`` to an ML program whose
input ``image`` is float32 ``[1, 3, H, W]`` with H and W each in a range ``[size multiple,
max_side]`` (``ct.RangeDim``) and whose output ``restored`` is float32.  A ``RangeDim`` cannot
say "a multiple of 8": the program's size range is the bound, and the multiple is the engine
contract's ``anyir_edge.size_multiple`` metadata (the runtime pads to it, as for every engine).

Core ML runs only on Apple platforms, so the program is not executed here.  What can be checked
without running it is (:func:`check`): the saved package reads back (Manifest, spec, weight
blobs); every operation is a Core ML op of the deployment target; the input and output are what
the contract asks; the program has the traced program's convolutions (count, weight elements,
and each weight tensor's values, to FP16 rounding with ``--half``; all finite); the metadata read
back equal what was written.
"""
from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np

from .. import artifact
from ..errors import first_line
from .formats import ExportError
from .mobile_export import quiet

INSTALL = "pip install anyir-edge[coreml]"
#: coremltools' ``ct.target.iOS16``: ML programs exist from iOS 15, but the CPU deploy form of the
#: networks without a mobile form (the paper-reading AnyIR) needs ``pixel_shuffle`` /
#: ``pixel_unshuffle``, Core ML ops from iOS 16 (coremltools refuses them for iOS 15); it is also
#: the minimum of ExecuTorch's Core ML delegate.  (PromptIR and MoCE-IR do not convert with
#: coremltools 9: a bilinear resize to a dynamic size, a ``mod`` of symbolic sizes.)  The input
#: and output stay float32 (asked explicitly: from iOS 16 coremltools makes them float16 with --half)
DEPLOYMENT_TARGET = "iOS16"
DEPLOYMENT_TARGET_OS = "iOS 16 / iPadOS 16 / macOS 13 / tvOS 16 / watchOS 9"
#: MIL ops kept in FP32 in a ``--half`` program: the ones that sum over the image or over channels
#: (matmul: the mobile form's attention products run over H*W pixels, which
#: overflows FP16 on large images), reductions, normalisation, softmax, powers and roots, exp/log;
#: the ONNX FP16 block list's counterparts (:data:`anyir_edge.export.precision.fp16.FP16_BLOCK_OPS`)
FP16_FP32_OPS = ("matmul", "reduce_mean", "reduce_sum", "reduce_sum_square", "reduce_l2_norm", "reduce_max",
                 "reduce_min", "reduce_log_sum_exp", "softmax", "layer_norm", "batch_norm", "instance_norm",
                 "l2_norm", "pow", "sqrt", "rsqrt", "inverse", "exp", "log")
CONV_OPS = ("conv", "conv_transpose")
#: torch.export ops that are convolutions (args: input, weight, ...)
TORCH_CONV_OPS = ("aten.conv1d", "aten.conv2d", "aten.conv3d", "aten.conv_transpose1d", "aten.conv_transpose2d",
                  "aten.conv_transpose3d", "aten.convolution", "aten._convolution")
#: a file coremltools 9 adds to a package converted from torch.export (ExecuTorch's debug-handle map,
#: not part of the model: Manifest.json does not list it); removed
_EXTRA_FILES = ("executorch_debug_handle_mapping.json",)


def coremltools():
    """The ``coremltools`` module, imported quietly; one-line ExportError when missing."""
    try:
        with quiet():
            import coremltools as ct
    except ImportError:
        raise ExportError(f"--to coreml needs coremltools: {INSTALL}") from None
    return ct


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v("coremltools")
    except PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- conversion
def float32_islands(ep) -> set[str]:
    """Names of the traced program's nodes that run inside a float32-only module (one of
    :data:`~anyir_edge.models.mobile.FP16_UNSAFE`, found by the module stack torch.export records).
    coremltools names each MIL op after the node it comes from (alone, or with a suffix such as
    ``_has_output_shape``), which is how a ``--half`` conversion keeps exactly those ops float32."""
    from ..models.mobile import FP16_UNSAFE

    kinds, todo = set(), list(FP16_UNSAFE)  # what ExecuTorch --half keeps float32 (HalfCompute), here by name
    while todo:
        c = todo.pop()
        kinds.add(f"{c.__module__}.{c.__qualname__}")
        todo.extend(c.__subclasses__())
    return {n.name for n in ep.graph.nodes if n.op == "call_function"
            and any(t in kinds for _, t in (n.meta.get("nn_module_stack") or {}).values())}


def in_island(name: str, islands: set[str]) -> bool:
    """Whether the MIL op or value ``name`` comes from a node of ``islands``: the node's name, or it
    with a suffix that is not a number (``conv2d_5`` is another node than ``conv2d``)."""
    if name in islands:
        return True
    parts = name.split("_")
    return any("_".join(parts[:i]) in islands and not parts[i].isdigit() for i in range(1, len(parts)))


def convert(model, fft: str, max_side: int, meta: dict[str, str], out: Path, half: bool = False,
            log=lambda s: None) -> dict:
    """Write ``model`` (a RestorationNet) as the Core ML package ``out`` (``NAME.mlpackage``) with
    ``meta`` as its user-defined metadata; returns the traced program's structure
    (:func:`torch_structure`) and the conversion's settings, for :func:`check`."""
    ct = coremltools()
    ep, form = trace(model, fft, max_side, log=log)
    islands = float32_islands(ep) if half else set()
    traced = torch_structure(ep, islands)
    m = model.size_multiple
    precision = "fp16" if half else "fp32"
    log(f"converting to a Core ML ML program (coremltools {version()}, {precision} compute, H and W {m}-{max_side}, "
        f"{DEPLOYMENT_TARGET}) ...")
    if half:
        # float16 but the op types that sum over many values and the float32-only modules' ops
        compute = ct.transform.FP16ComputePrecision(
            op_selector=lambda op: op.op_type not in FP16_FP32_OPS and not in_island(op.name, islands))
    else:
        compute = ct.precision.FLOAT32
    side = ct.RangeDim(lower_bound=m, upper_bound=max_side, default=max_side)
    side2 = ct.RangeDim(lower_bound=m, upper_bound=max_side, default=max_side)
    tmp = out.with_name(out.stem + ".converted.mlpackage")
    with quiet():
        try:
            mlmodel = ct.convert(
                ep,
                inputs=[ct.TensorType(name=artifact.INPUT_NAME, shape=(1, model.in_channels, side, side2),
                                      dtype=np.float32)],
                outputs=[ct.TensorType(name=artifact.OUTPUT_NAME, dtype=np.float32)],
                convert_to="mlprogram", compute_precision=compute,
                minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                skip_model_load=True, package_dir=str(tmp))
        except Exception as e:
            raise ExportError(f"Core ML conversion failed ({type(e).__name__}: {first_line(e)})") from None
    log(f"writing {out.name} with the engine contract's metadata ...")
    with quiet():
        try:
            from .. import __version__

            for k, v in meta.items():
                mlmodel.user_defined_metadata[k] = str(v)
            name = meta.get(artifact.NAME, "model")
            mlmodel.author = f"anyir-edge {__version__}"
            mlmodel.version = __version__
            mlmodel.short_description = (
                f"{name} ({meta.get(artifact.ARCH, '?')}) image restoration, {precision}: float32 RGB in [0, 1], "
                f"[1, 3, H, W] with H and W multiples of {m} up to {max_side} (pad bottom/right, crop back)")
            mlmodel.input_description[artifact.INPUT_NAME] = (
                f"float32 [1, 3, H, W], RGB in [0, 1]; H and W multiples of {m}, {m} to {max_side}")
            mlmodel.output_description[artifact.OUTPUT_NAME] = "float32 [1, 3, H, W], the restored image (unclipped)"
            mlmodel.save(str(out))
        except Exception as e:
            raise ExportError(f"writing the Core ML package failed ({type(e).__name__}: {first_line(e)})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for extra in _EXTRA_FILES:
        (out / extra).unlink(missing_ok=True)
    _plain_permissions(out)
    return {"traced": traced, "deploy_form": form, "precision": precision, "max_side": max_side,
            "size_multiple": m, "in_channels": model.in_channels, "metadata": dict(meta),
            "fp32_ops": list(FP16_FP32_OPS) if half else [], "fp32_islands": sorted(islands)}


def trace(model, fft: str, max_side: int, log=lambda s: None):
    """(the ``torch.export`` program :func:`convert` converts, deploy form's name): the mobile form
    traced with bounded H and W (:func:`~anyir_edge.export.mobile_export.bounded_export`), in the
    ATEN dialect coremltools takes (``run_decompositions({})``; the conversion leaves it unchanged)."""
    from .mobile_export import bounded_export

    ep, form = bounded_export(model, fft, max_side, log=log, target="coreml")
    with quiet():
        try:
            return ep.run_decompositions({}), form
        except Exception as e:
            raise ExportError(f"torch.export decomposition for Core ML failed ({first_line(e)})") from None


def _plain_permissions(root: Path) -> None:
    """The permissions a plain ``open`` / ``mkdir`` would give (coremltools writes the spec 0600)."""
    import os

    from ..fsutil import _UMASK

    for d, dirs, files in os.walk(root):
        os.chmod(d, 0o777 & ~_UMASK)
        for f in files:
            os.chmod(os.path.join(d, f), 0o666 & ~_UMASK)


def torch_structure(ep, islands: set[str] = frozenset()) -> dict:
    """The convolutions of a ``torch.export`` program: their ops and weight tensors (numpy; None for a
    weight computed in the graph, whose element count still comes from its traced shape), and
    whether each is in one of ``islands`` (:func:`float32_islands`: kept float32 in a --half program)."""
    sig = ep.graph_signature
    names = {**sig.inputs_to_parameters, **sig.inputs_to_buffers,
             **getattr(sig, "inputs_to_lifted_tensor_constants", {})}
    tensors = {**dict(ep.state_dict), **dict(ep.constants)}
    convs = []
    for n in ep.graph_module.graph.nodes:
        if n.op != "call_function":
            continue
        op = str(n.target).split(".default")[0]
        if not op.startswith(TORCH_CONV_OPS) or len(n.args) < 2:
            continue
        w = n.args[1]
        val = w.meta.get("val") if hasattr(w, "meta") else None
        shape = tuple(int(d) for d in val.shape) if val is not None else None
        t = tensors.get(names.get(w.name)) if getattr(w, "op", None) == "placeholder" else None
        convs.append({"op": op, "shape": shape, "fp32": n.name in islands,
                      "weight": t.detach().float().cpu().numpy() if t is not None else None})
    return {"convs": convs}


# ------------------------------------------------------------------------- reading back
def _dims(tensor_type) -> list:
    out = []
    for d in tensor_type.dimensions:
        kind = d.WhichOneof("dimension")
        out.append(int(d.constant.size) if kind == "constant" else "?")
    return out


def _walk_ops(block):
    for op in block.operations:
        yield op
        for b in op.blocks:
            yield from _walk_ops(b)


def read_package(path) -> dict:
    """What a saved ``.mlpackage`` says about itself, read without Core ML (no execution): manifest,
    spec (program, input/output, metadata) and every convolution's weight tensor from the weight
    blobs.  Raises ExportError when the package cannot be read."""
    ct = coremltools()
    from coremltools.proto import FeatureTypes_pb2, MIL_pb2

    path = Path(path)
    manifest = json.loads((path / "Manifest.json").read_text())
    with quiet():
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    spec = mlmodel.get_spec()
    out = {"manifest": manifest, "specification_version": int(spec.specificationVersion),
           "model_type": spec.WhichOneof("Type"), "metadata": dict(spec.description.metadata.userDefined),
           "author": spec.description.metadata.author, "version": spec.description.metadata.versionString,
           "short_description": spec.description.metadata.shortDescription}

    def feature(f):
        arr = f.type.multiArrayType
        ranges = [[int(r.lowerBound), int(r.upperBound)] for r in arr.shapeRange.sizeRanges]
        return {"name": f.name, "type": f.type.WhichOneof("Type"),
                "dtype": FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower(),
                "default_shape": [int(s) for s in arr.shape], "ranges": ranges}

    out["inputs"] = [feature(f) for f in spec.description.input]
    out["outputs"] = [feature(f) for f in spec.description.output]
    if out["model_type"] != "mlProgram":
        return out
    prog = spec.mlProgram
    out["functions"] = list(prog.functions)
    main = prog.functions["main"] if "main" in prog.functions else None
    if main is None:
        return out
    out["opset"] = main.opset
    block = main.block_specializations[main.opset]
    ops = list(_walk_ops(block))
    out["op_histogram"] = dict(sorted(collections.Counter(o.type for o in ops).items()))
    out["op_outputs"] = [(o.type, o.outputs[0].name, MIL_pb2.DataType.Name(o.outputs[0].type.tensorType.dataType).lower())
                         for o in ops if o.type != "const" and o.outputs
                         and o.outputs[0].type.WhichOneof("type") == "tensorType"]
    out["program_inputs"] = [{"name": i.name, "dtype": MIL_pb2.DataType.Name(i.type.tensorType.dataType).lower(),
                              "rank": int(i.type.tensorType.rank), "dims": _dims(i.type.tensorType)}
                             for i in main.inputs]
    producers = {o.outputs[0].name: o for o in ops if o.outputs}
    outs = []
    for name in block.outputs:
        t = producers[name].outputs[0].type.tensorType if name in producers else None
        outs.append({"name": name, "dtype": MIL_pb2.DataType.Name(t.dataType).lower() if t else "?",
                     "rank": int(t.rank) if t else None, "dims": _dims(t) if t else None})
    out["program_outputs"] = outs
    out["convs"] = [_conv_weight(o, producers, mlmodel.weights_dir, MIL_pb2) for o in ops if o.type in CONV_OPS]
    return out


def _conv_weight(op, producers, weights_dir, MIL_pb2) -> dict:
    """One MIL convolution: its weight's shape, dtype and values (None when it is not a constant or
    cannot be read; ``error`` says why)."""
    row = {"op": op.type, "shape": None, "dtype": None, "weight": None}
    args = op.inputs["weight"].arguments if "weight" in op.inputs else []
    if not args:
        return {**row, "error": "no weight input"}
    if args[0].WhichOneof("binding") != "name":
        return {**row, "error": "an inline weight"}
    const = producers.get(args[0].name)
    if const is None or const.type != "const":
        return {**row, "error": f"weight computed by {const.type if const is not None else 'a function input'}"}
    t = const.outputs[0].type.tensorType
    shape = _dims(t)
    dtype = MIL_pb2.DataType.Name(t.dataType).lower()
    row.update(shape=shape, dtype=dtype)
    try:
        row["weight"] = _const_value(const.attributes["val"], dtype, weights_dir).reshape(shape)
    except Exception as e:  # a truncated blob, an unknown encoding
        row["error"] = f"its weight cannot be read ({first_line(e, 120)})"
    return row


def _const_value(val, dtype: str, weights_dir) -> np.ndarray:
    np_dtype = {"float16": np.float16, "float32": np.float32}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"weight type {dtype}")
    kind = val.WhichOneof("value")
    if kind == "blobFileValue":
        from coremltools.libmilstoragepython import _BlobStorageReader

        blob = val.blobFileValue
        reader = _BlobStorageReader(str(Path(weights_dir) / blob.fileName.split("/")[-1]))
        if np_dtype is np.float16:
            return np.frombuffer(reader.read_fp16_data(blob.offset).tobytes(), np.float16)
        return np.asarray(reader.read_float_data(blob.offset), np.float32)
    if kind == "immediateValue":
        tensor = val.immediateValue.tensor
        which = tensor.WhichOneof("value")
        if which == "floats":
            return np.asarray(tensor.floats.values, np.float32)
        if which == "bytes":
            return np.frombuffer(tensor.bytes.values, np_dtype)
        raise ValueError(f"immediate {which} values")
    raise ValueError(f"{kind} value")


# ---------------------------------------------------------------------------- the checks
def check(path, built: dict) -> tuple[dict, str | None]:
    """The structural checks of the package at ``path`` against what :func:`convert` was asked and
    traced (``built``): (checks, the first failure as one line or None).  Each check is a dict with
    ``passed`` and what was compared."""
    try:
        pkg = read_package(path)
    except ExportError:
        raise
    except Exception as e:
        why = f"the saved package cannot be read back ({type(e).__name__}: {first_line(e, 150)})"
        return {"package": {"passed": False, "error": why}}, why
    checks = {}
    for name, fn in (("package", _check_package), ("program", _check_program), ("io", _check_io),
                     ("convolutions", _check_convolutions), ("conv_weights", _check_conv_weights),
                     ("fp32_islands", _check_fp32_islands), ("metadata", _check_metadata)):
        try:
            checks[name] = fn(Path(path), pkg, built)
        except Exception as e:  # a spec shaped unlike what this code knows is a failed check, not a crash
            checks[name] = {"passed": False, "error": f"{type(e).__name__}: {first_line(e, 150)}"}
    failure = next((f"structural check '{k}' failed: {c.get('error') or 'see the certificate'}"
                    for k, c in checks.items() if not c["passed"]), None)
    return checks, failure


def _check_package(path: Path, pkg: dict, built: dict) -> dict:
    items = pkg["manifest"].get("itemInfoEntries", {})
    root = pkg["manifest"].get("rootModelIdentifier")
    missing = [v.get("path") for v in items.values() if not (path / "Data" / v.get("path", "")).exists()]
    res = {"files": len(artifact.engine_files(path)), "size_mb": round(artifact.engine_size_mb(path), 3),
           "manifest_items": sorted(v.get("name", "?") for v in items.values()),
           "model_type": pkg["model_type"], "specification_version": pkg["specification_version"]}
    err = None
    if root not in items:
        err = "Manifest.json names no root model"
    elif missing:
        err = f"Manifest.json lists {missing} which the package does not have"
    elif pkg["model_type"] != "mlProgram":
        err = f"the spec is a {pkg['model_type']}, not an ML program"
    return {"passed": err is None, **res, **({"error": err} if err else {})}


def _check_program(path: Path, pkg: dict, built: dict) -> dict:
    """One function ``main``; every op a Core ML op available at the deployment target."""
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry
    import coremltools as ct

    hist = pkg.get("op_histogram", {})
    target = getattr(ct.target, DEPLOYMENT_TARGET)
    unknown = []
    for op in hist:
        versions = SSAOpRegistry.core_ops.get(op)
        if not versions or min(versions) > target:
            unknown.append(op)
    res = {"functions": pkg.get("functions", []), "opset": pkg.get("opset"), "deployment_target": DEPLOYMENT_TARGET,
           "operations": sum(hist.values()), "op_histogram": hist}
    err = None
    if pkg.get("functions") != ["main"]:
        err = f"functions {pkg.get('functions')}, expected one, 'main'"
    elif not hist:
        err = "the program has no operations"
    elif unknown:
        err = f"ops that are not Core ML {DEPLOYMENT_TARGET} ops: {', '.join(unknown)}"
    if unknown:
        res["not_core_ops"] = unknown
    return {"passed": err is None, **res, **({"error": err} if err else {})}


def _check_io(path: Path, pkg: dict, built: dict) -> dict:
    """The model's input and output (spec description and program signature) against the contract:
    ``image`` float32 [1, 3, m..max_side, m..max_side], ``restored`` float32 rank 4 [1, 3, ?, ?]."""
    m, side, c = built["size_multiple"], built["max_side"], built["in_channels"]
    want_in = {"name": artifact.INPUT_NAME, "dtype": "float32", "ranges": [[1, 1], [c, c], [m, side], [m, side]]}
    want_out = {"name": artifact.OUTPUT_NAME, "dtype": "float32", "rank": 4, "dims": [1, c, "?", "?"]}
    ins, outs = pkg["inputs"], pkg["outputs"]
    pins, pouts = pkg.get("program_inputs", []), pkg.get("program_outputs", [])
    err = None
    if len(ins) != 1 or len(outs) != 1 or len(pins) != 1 or len(pouts) != 1:
        err = f"{len(ins)} input(s) and {len(outs)} output(s), expected 1 and 1"
    else:
        i, o, pi, po = ins[0], outs[0], pins[0], pouts[0]
        if i["name"] != want_in["name"] or pi["name"] != want_in["name"]:
            err = f"input named {i['name']!r}, expected {want_in['name']!r}"
        elif i["dtype"] != "float32" or pi["dtype"] != "float32":
            err = f"input is {i['dtype']}, expected float32"
        elif i["ranges"] != want_in["ranges"]:
            err = f"input size ranges {i['ranges']}, expected {want_in['ranges']}"
        elif pi["rank"] != 4 or pi["dims"] != [1, c, "?", "?"]:
            err = f"program input dims {pi['dims']}, expected [1, {c}, ?, ?]"
        elif o["name"] != want_out["name"] or po["name"] != want_out["name"]:
            err = f"output named {o['name']!r}, expected {want_out['name']!r}"
        elif o["dtype"] != "float32" or po["dtype"] != "float32":
            err = f"output is {o['dtype']} ({po['dtype']} in the program), expected float32"
        elif po["rank"] != 4 or po["dims"] != want_out["dims"]:
            err = f"output dims {po['dims']}, expected {want_out['dims']}"
    res = {"input": ins[0] if ins else None, "output": outs[0] if outs else None,
           "program_input": pins[0] if pins else None, "program_output": pouts[0] if pouts else None,
           "expected": {"input": want_in, "output": want_out},
           "size_multiple": f"{m} (not expressible as a Core ML size range: anyir_edge.size_multiple metadata; "
                            "the runtime pads)"}
    return {"passed": err is None, **res, **({"error": err} if err else {})}


def _elements(shape) -> int:
    return int(np.prod(shape)) if shape else 0


def _check_convolutions(path: Path, pkg: dict, built: dict) -> dict:
    """As many convolutions, with as many weight elements, as the traced torch.export program."""
    t_convs, c_convs = built["traced"]["convs"], pkg.get("convs", [])
    torch_side = {"count": len(t_convs), "weight_elements": sum(_elements(c["shape"]) for c in t_convs),
                  "by_op": dict(collections.Counter(c["op"] for c in t_convs))}
    coreml_side = {"count": len(c_convs), "weight_elements": sum(_elements(c["shape"]) for c in c_convs),
                   "by_op": dict(collections.Counter(c["op"] for c in c_convs))}
    err = None
    unread = [c["error"] for c in c_convs if c.get("error") and c["shape"] is None]
    if not t_convs:
        err = "the traced program has no convolutions to compare"
    elif coreml_side["count"] != torch_side["count"]:
        err = f"the Core ML program has {coreml_side['count']} convolutions, the traced program {torch_side['count']}"
    elif unread:
        err = f"{len(unread)} Core ML convolution weight(s) are not constants: {unread[0]}"
    elif coreml_side["weight_elements"] != torch_side["weight_elements"]:
        err = (f"the Core ML convolutions have {coreml_side['weight_elements']} weight elements, the traced "
               f"program's {torch_side['weight_elements']}")
    return {"passed": err is None, "torch": torch_side, "coreml": coreml_side, **({"error": err} if err else {})}


def _check_conv_weights(path: Path, pkg: dict, built: dict) -> dict:
    """Every Core ML convolution weight is finite and equals one of the traced program's convolution
    weights of the same shape (FP16: the FP32 weight rounded to FP16), each matched once."""
    half = built["precision"] == "fp16"
    pool, want = collections.defaultdict(list), collections.Counter()
    for c in built["traced"]["convs"]:
        if c["weight"] is not None:
            dtype = "float16" if half and not c.get("fp32") else "float32"  # float32 islands keep their weights
            ref = c["weight"].astype(np.float16).astype(np.float32) if dtype == "float16" else c["weight"].astype(np.float32)
            pool[(tuple(ref.shape), dtype)].append(ref)
            want[dtype] += 1
    rtol, atol = (1e-3, 1e-7) if half else (1e-6, 1e-12)
    dtypes = collections.Counter(c["dtype"] for c in pkg.get("convs", []))
    compared = matched = 0
    bad, nonfinite, unreadable = [], 0, []
    for i, c in enumerate(pkg.get("convs", [])):
        if c["weight"] is None:
            unreadable.append(c.get("error", "unreadable"))
            continue
        w = c["weight"].astype(np.float32)
        if not np.isfinite(w).all():
            nonfinite += 1
            continue
        candidates = pool.get((tuple(w.shape), c["dtype"]), [])
        compared += 1
        for j, ref in enumerate(candidates):
            if np.allclose(w, ref, rtol=rtol, atol=atol):
                matched += 1
                del candidates[j]
                break
        else:
            bad.append(i)
    res = {"dtype": dict(dtypes), "expected_dtype": dict(want), "compared": compared, "equal": matched,
           "tolerance": {"rtol": rtol, "atol": atol, "against": "the traced weight" + (" rounded to fp16" if half else "")}}
    err = None
    if unreadable:
        err = f"{len(unreadable)} convolution weight(s) cannot be read: {unreadable[0]}"
    elif nonfinite:
        err = f"{nonfinite} convolution weight tensor(s) hold inf or NaN"
    elif set(dtypes) != set(want):  # (a weight of the wrong one of two dtypes matches no traced weight below)
        err = f"convolution weights are {dict(dtypes)}, expected {dict(want)}"
    elif bad:
        err = (f"{len(bad)} of {compared} convolution weights equal no traced convolution weight "
               f"(first: #{bad[0]}, shape {pkg['convs'][bad[0]]['shape']})")
    return {"passed": err is None, **res, **({"error": err} if err else {})}


def _check_fp32_islands(path: Path, pkg: dict, built: dict) -> dict:
    """--half: every op made from a float32-only module's nodes (:func:`float32_islands`) computes
    in float32 (casts at the islands' edges aside), and there are such ops when there are islands."""
    islands = set(built.get("fp32_islands", []))
    ops = [(t, name, dtype) for t, name, dtype in pkg.get("op_outputs", []) if t != "cast" and in_island(name, islands)]
    half = [(name, dtype) for t, name, dtype in ops if dtype != "float32"]
    res = {"islands": len(islands), "ops": len(ops), "not_float32": [name for name, _ in half[:5]]}
    err = None
    if half:
        err = (f"{len(half)} op(s) of float32-only modules compute in {half[0][1]}: "
               f"{', '.join(name for name, _ in half[:3])}")
    elif islands and not ops:
        err = (f"none of the {len(islands)} nodes of float32-only modules is found among the program's ops "
               "(coremltools named them otherwise: they may have been converted to float16)")
    return {"passed": err is None, **res, **({"error": err} if err else {})}


def _check_metadata(path: Path, pkg: dict, built: dict) -> dict:
    """The engine contract's metadata read back from the saved package equal what was written."""
    want, have = built["metadata"], pkg["metadata"]
    missing = sorted(k for k in want if k not in have)
    different = sorted(k for k in want if k in have and have[k] != str(want[k]))
    err = None
    if missing:
        err = f"metadata missing after saving: {', '.join(missing)}"
    elif different:
        err = f"metadata read back differ: {', '.join(different)}"
    elif not pkg["author"] or not pkg["short_description"]:
        err = "the model's author / description were not saved"
    return {"passed": err is None, "keys": len(want), "read_back": len([k for k in want if k in have]),
            "author": pkg["author"], "version": pkg["version"],
            **({"missing": missing, "different": different, "error": err} if err else {})}
