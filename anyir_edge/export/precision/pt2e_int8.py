"""INT8 phone programs (ExecuTorch and LiteRT): XNNPACK's pt2e quantizer annotations on the
mobile form's convolutions, with the rules, gate and search of the ONNX INT8 engines
(:mod:`anyir_edge.export.precision.int8`).  What is shared lives here; each backend's
:class:`Pt2eQuantizer` subclass turns the quantized modules into its file
(:mod:`.executorch_int8`, :mod:`.litert_int8`).

The static ``torch.export`` programs of the mobile form (one per ``--sizes`` entry,
:func:`anyir_edge.export.mobile_export.static_exports`) are each quantized with
``torchao.quantization.pt2e`` (``prepare_pt2e`` / ``convert_pt2e``) and ``XNNPACKQuantizer``
(per-channel symmetric INT8 weights, per-tensor INT8 activations, histogram calibration on
degraded crops at that method's size).  Only convolutions are quantized (the ONNX engines
quantize Conv and MatMul; the attention's matrix products are between two activations and stay
float, as ONNX Runtime keeps them): a filter given to the quantizer leaves every other op and
every convolution named "float" untouched.  Static shapes only: XNNPACK fails at run time on a
quantized ExecuTorch program with dynamic H and W ("Propagating input shapes failed"), and
litert-torch converts static shapes only.

Convolutions are named by the module that runs them in the mobile form (``nn_module_stack``:
``model.encoder_level1.0.dw_q``), the names the certificate and metadata list.  Three kinds stay
float by rule, as in ONNX (:func:`rule_float_convs`): the image's reader, the output's writer
and the convolutions whose input is a product of two activations.  A convolution the backend
does not take in INT8 is found after building and left float too (``float_by_delegate``).  When
parity misses the gate, :func:`~anyir_edge.export.precision.search.bisect_keep` looks for a
window of further convolutions to leave float; XNNPACK has no dynamic INT8 convolution, so there
is no dynamic fallback.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ... import artifact
from ..formats import ExportError
from .int8 import MAX_FLOAT_FRACTION
from .search import DEFAULT_MAX_EVALS, bisect_keep

SCHEME = ("pt2e XNNPACKQuantizer: per-channel symmetric INT8 weights, per-tensor INT8 activations, histogram "
          "calibration; convolutions only")
#: ops that only move data between a convolution and the image or the output
_MOVES = ("view", "reshape", "slice", "pad", "clone", "contiguous", "permute", "expand", "alias")


def _is_conv(n) -> bool:
    return n.op == "call_function" and "aten.conv" in str(n.target)


def conv_key(n) -> str:
    """A convolution's name: the path of the module that runs it (the node's name without one)."""
    stack = n.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else n.name


def conv_keys(gm) -> list[str]:
    """The convolutions of a graph module, by :func:`conv_key`, in graph order (each once)."""
    return list(dict.fromkeys(conv_key(n) for n in gm.graph.nodes if _is_conv(n)))


def _op(n) -> str:
    return str(n.target).split(".")[1] if n.op == "call_function" and str(n.target).startswith("aten.") else ""


def rule_float_convs(gm) -> dict[str, str]:
    """Convolutions static INT8 leaves float by rule (the rules of
    :func:`anyir_edge.export.precision.int8.int8_rule_float_nodes`), name -> why."""
    graph = gm.graph
    output = next(n for n in graph.nodes if n.op == "output")
    out_values = _flat_nodes(output.args)

    def from_input(a) -> bool:
        if not isinstance(a, torch.fx.Node):
            return False
        if a.op == "placeholder":
            return True
        return any(m in _op(a) for m in _MOVES) and bool(a.args) and from_input(a.args[0])

    def reaches_output(n, adds: int = 1) -> bool:
        if n in out_values:
            return True
        for u in n.users:
            if any(m in _op(u) for m in _MOVES) and u.args and u.args[0] is n and reaches_output(u, adds):
                return True
            if _op(u) == "add" and adds and reaches_output(u, adds - 1):
                return True
        return False

    def channels(v):
        val = v.meta.get("val") if isinstance(v, torch.fx.Node) else None
        return val.shape[1] if val is not None and val.dim() > 1 else None

    def product_of_activations(a) -> bool:
        """gelu(a) * b of the gated FFN (two different activations of the same width); not the
        mobile LayerNorm's x * x or (x - mean) * rstd (one channel)."""
        if not (isinstance(a, torch.fx.Node) and _op(a) == "mul"):
            return False
        x, y = a.args[:2]
        if x is y or not all(isinstance(v, torch.fx.Node) and v.op != "get_attr" for v in (x, y)):
            return False
        return channels(x) is not None and channels(x) == channels(y) and channels(x) > 1

    def statistic(n) -> bool:
        """A convolution with one output channel: the mobile LayerNorm's channel mean / variance."""
        w = n.args[1] if len(n.args) > 1 else None
        val = w.meta.get("val") if isinstance(w, torch.fx.Node) else None
        return val is not None and val.shape[0] == 1

    rules: dict[str, str] = {}
    for n in graph.nodes:
        if not _is_conv(n):
            continue
        act = n.args[0]
        if from_input(act):
            why = "reads the image"
        elif reaches_output(n):
            why = "writes the output"
        elif product_of_activations(act):
            why = "input is a product of two activations"
        elif statistic(n):
            why = "computes a normalisation statistic"
        else:
            continue
        rules.setdefault(conv_key(n), why)
    return rules


def _flat_nodes(args) -> set:
    out = set()

    def walk(a):
        if isinstance(a, torch.fx.Node):
            out.add(a)
        elif isinstance(a, (list, tuple)):
            for b in a:
                walk(b)
    walk(args)
    return out


def _observers(m) -> dict | None:
    """A prepared module's observers by (watched node's name, observer type), None when two share
    a key (their statistics could not be told apart)."""
    out = {}
    for n in m.graph.nodes:
        if n.op == "call_module" and "activation_post_process" in str(n.target) and n.args \
                and isinstance(n.args[0], torch.fx.Node):
            obs = m.get_submodule(n.target)
            key = (n.args[0].name, type(obs).__name__)
            if key in out and out[key] is not obs:
                return None
            out[key] = obs
    return out


class Pt2eQuantizer:
    """A program's static methods (one ``torch.export`` program per size) and their calibration
    samples; :meth:`build` (per backend) quantizes every convolution not named float, in every
    method, and writes them into one file (the methods still share the weights: per-channel
    weight scales depend on the weights alone)."""

    #: the backend's name in messages
    backend = ""
    #: the phone target whose mobile form the programs trace (``Architecture.deploy_copy``)
    mobile_target: str | None = None
    #: what the certificate's ``reduced_precision.scheme`` says
    scheme = SCHEME
    #: the file suffix of the backend's programs (the probe the search runs)
    suffix = ""
    #: the certificate key of the backend's build report
    report_key = "build"
    #: ``convert_pt2e``'s ``fold_quantize``: quantized weights folded into constants (ExecuTorch) or
    #: kept as quantize ops on float weights (what litert-torch's STATIC mode converts)
    fold_quantize = True

    def __init__(self, programs: dict, samples_for: Callable[[int, int], list[np.ndarray]], meta: dict[str, str],
                 log: Callable[[str], None] | None = None):
        """``programs``: {method name: static ``torch.export`` program}; ``samples_for(h, w)``:
        (1, 3, h, w) float32 calibration samples at a method's size; ``log``: one line per stage
        (a build takes minutes per method)."""
        self.programs, self.meta = programs, meta
        self.log = log or (lambda s: None)
        self.modules = {name: ep.module() for name, ep in programs.items()}
        self.sizes = {name: tuple(int(v) for v in ep.example_inputs[0][0].shape[-2:]) for name, ep in programs.items()}
        self.samples = {name: samples_for(*hw) for name, hw in self.sizes.items()}
        self.module = next(iter(self.modules.values()))  # the rules and names: the same in every method
        self.candidates = conv_keys(self.module)
        self._stats: dict[str, dict] = {}  # method -> {observer key: calibrated state} (:meth:`quantized`)

    def quantized(self, name: str, keep: set) -> torch.fx.GraphModule:
        """Method ``name`` quantized: prepared, calibrated on its samples and converted.

        Calibration runs once per method: a prepared module's observers only watch (the forward
        stays float), so the statistics of a tensor do not depend on which convolutions are
        quantized, and a later build with more convolutions float (the declined ones, the
        search's windows) loads the first build's statistics into its observers, which watch a
        subset of the same tensors."""
        from ..mobile_export import quiet

        with quiet():  # torchao's import-time log lines and prepare_pt2e's warnings
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                                 get_symmetric_quantization_config)
            from torchao.quantization.pt2e import move_exported_model_to_eval
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            quantizer.set_filter_function(
                lambda n: n.op != "call_function" or (_is_conv(n) and conv_key(n) not in keep))
            m = prepare_pt2e(copy.deepcopy(self.modules[name]), quantizer)
        h, w = self.sizes[name]
        observers = _observers(m)
        stats = self._stats.get(name)
        if observers is not None and stats is not None and set(observers) <= set(stats):
            self.log(f"  {name}: the calibration statistics of the first build ({len(observers)} observers)")
            for key, obs in observers.items():
                obs.load_state_dict(stats[key])
        else:
            self.log(f"  {name}: calibrating on {len(self.samples[name])} samples at {h}x{w} ...")
            with torch.no_grad(), quiet():
                for s in self.samples[name]:
                    m(torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32)))
            if observers is not None and name not in self._stats:
                self._stats[name] = {key: copy.deepcopy(obs.state_dict()) for key, obs in observers.items()}
        with quiet():
            return move_exported_model_to_eval(convert_pt2e(m, fold_quantize=self.fold_quantize))

    def known_declined(self) -> list[str]:
        """The convolutions the backend is known not to take in INT8 (left float from the start,
        saving a build that would find them)."""
        return []

    def build(self, float_convs: list[str], extra_meta: dict[str, str] | None = None) -> tuple[bytes, dict]:
        """(file bytes, build report with ``declined``: the quantized convolutions the backend did
        not take in INT8, by :func:`conv_key`; no bytes where there are any) with ``float_convs``
        left float."""
        raise NotImplementedError


def quantize_pt2e(q: Pt2eQuantizer, work: Path, probe=None, threshold: float | None = None,
                   search: bool = True, max_evals: int = DEFAULT_MAX_EVALS,
                   log: Callable[[str], None] | None = None, calib_desc: dict | None = None,
                   rules: bool = True) -> tuple[bytes, dict]:
    """The INT8 program's bytes and the report (the certificate's ``reduced_precision``).  Static
    quantization with the rule convolutions float; with a ``probe`` and ``threshold``, a window of
    further convolutions left float by bisection when parity misses the gate."""
    log = log or (lambda s: None)
    rule_convs = rule_float_convs(q.module) if rules else {}
    float_by_delegate: list[str] = q.known_declined()
    if float_by_delegate:
        log(f"  {q.backend} does not take {len(float_by_delegate)} convolution(s) in INT8 "
            f"({', '.join(float_by_delegate[:4])}{' ...' if len(float_by_delegate) > 4 else ''}): left float")
    log(f"INT8: {len(rule_convs)} of {len(q.candidates)} convolutions left float by rule (the image's reader, the "
        "output's writer, inputs that are products of activations)")
    probe_path = Path(work) / f"int8-probe{q.suffix}"

    def meta_for(excluded: list[str]) -> dict[str, str]:
        quantized = [c for c in q.candidates if c not in set(excluded)]
        return {artifact.PREFIX + "precision": "int8", artifact.PREFIX + "int8_method": "static",
                artifact.PREFIX + "int8_quantized_nodes": json.dumps(quantized),
                artifact.PREFIX + "int8_float_nodes": json.dumps(excluded),
                artifact.PREFIX + "int8_float_nodes_by_rule": json.dumps(rule_convs),
                artifact.INT8_WEIGHT_BITS: "8",
                artifact.PREFIX + "int8_calibration": json.dumps(calib_desc or {})}

    def build(excluded: list[str]) -> tuple[bytes, list[str], dict]:
        """Built with ``excluded`` float, plus whatever the backend declines in INT8 (rebuilt without them)."""
        excluded = list(dict.fromkeys(list(float_by_delegate) + list(excluded)))
        for _ in range(3):
            buf, rep = q.build(excluded, meta_for(excluded))
            if not rep["declined"]:
                return buf, excluded, rep
            new = [c for c in rep["declined"] if c not in excluded]
            if not new:
                break
            float_by_delegate.extend(c for c in new if c not in float_by_delegate)
            log(f"  {q.backend} does not take {len(new)} convolution(s) in INT8 ({', '.join(new[:4])}"
                f"{' ...' if len(new) > 4 else ''}): left float")
            excluded = excluded + new
        raise ExportError(f"{q.backend} INT8: it keeps declining quantized convolutions "
                          f"({', '.join(rep['declined'][:4])})")

    def parity(buf: bytes) -> float:
        probe_path.write_bytes(buf)
        return probe(probe_path)

    base = list(rule_convs)
    buf, excluded, rep = build(base)
    tried, psnr_db = [], None
    if probe is not None and threshold is not None:
        psnr_db = parity(buf)
        tried.append({"method": "static", "excluded": len(excluded), "psnr_min": round(psnr_db, 3)})
        log(f"INT8 static ({q.backend}, per-channel weights): parity {psnr_db:.1f} dB")
        if psnr_db < threshold and search:
            cand = [c for c in q.candidates if c not in set(excluded)]
            log(f"below the {threshold:g} dB gate: bisecting which of {len(cand)} convolutions to leave float ...")

            def passes(extra):
                return parity(build(excluded + list(extra))[0]) >= threshold

            found = bisect_keep(cand, passes, max_evals, log)
            if found is not None and len(found) > MAX_FLOAT_FRACTION * max(1, len(cand)):
                log(f"  parity needs {len(found)} of {len(cand)} convolutions left float: not an INT8 engine, not used")
                found = None
            if found is not None:
                buf, excluded, rep = build(excluded + found)
                psnr_db = parity(buf)
                tried.append({"method": "static", "excluded": len(excluded), "psnr_min": round(psnr_db, 3)})
    probe_path.unlink(missing_ok=True)
    quantized = [c for c in q.candidates if c not in set(excluded)]
    report = {"precision": "int8", "method": "static", "scheme": q.scheme, "reduce_range": False,
              "op_types": ["convolution"], "quantized_nodes": quantized, "float_nodes": excluded,
              "float_nodes_by_rule": rule_convs, "float_by_delegate": list(float_by_delegate),
              "candidates": len(q.candidates), "attempts": tried, "calibration": calib_desc,
              q.report_key: {k: v for k, v in rep.items() if k != "declined"}}
    return buf, report
