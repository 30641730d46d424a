"""INT8 LiteRT models (:mod:`anyir_edge.export.precision.pt2e_int8`): each quantized method
(``convert_pt2e`` without folding, so the weights keep their quantize ops) becomes one signature
of one ``.tflite``, converted by litert-torch in its STATIC q/dq mode: a convolution between a
dequantize and a quantize becomes an INT8 ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` /
``TRANSPOSE_CONV`` with INT8 weights and INT32 bias.

What became INT8 is read back from the flatbuffer (the type of each op's activation input,
:func:`anyir_edge.export.litert_export.op_report`): per signature and per kind of convolution the
INT8 ops must number the quantized convolutions of that kind; a kind the converter kept float
(it dequantized the weights instead) is declined, and its convolutions are left float by name.
litert-torch 0.10 does that with every transposed convolution (measured: an annotated
``conv_transpose2d`` became a float ``TRANSPOSE_CONV`` behind a DEQUANTIZE of its weights), so
those are left float from the start (:attr:`LiteRTQuantizer.float_kinds`).  The converter also
quantizes on its own: a float transposed convolution between INT8 neighbours can come out INT8
(one of three in the small test network).  Such ops are counted, per kind, in the report's
``int8_beyond_annotated``: the certificate's float list names what we left float, the op counts
say what the file computes in INT8.
"""
from __future__ import annotations

import collections

import torch

from ... import artifact
from ..formats import ExportError
from ..litert_export import TARGET, convert_signatures
from .pt2e_int8 import SCHEME, Pt2eQuantizer, _is_conv, conv_key

#: the TFLite ops that run each kind of convolution (``aten.conv2d``, ``aten.conv_transpose2d``)
CONV_KINDS = {"conv2d": ("CONV_2D", "DEPTHWISE_CONV_2D"), "conv_transpose2d": ("TRANSPOSE_CONV",)}


def _kind(n) -> str:
    return "conv_transpose2d" if "conv_transpose" in str(n.target) else "conv2d"


class LiteRTQuantizer(Pt2eQuantizer):
    backend = "LiteRT"
    mobile_target = TARGET
    suffix = ".tflite"
    report_key = "ops"
    fold_quantize = False
    scheme = SCHEME + "; converted by litert-torch (STATIC q/dq mode)"
    #: kinds of convolution litert-torch keeps float even when annotated (see the module's docstring)
    float_kinds = ("conv_transpose2d",)

    def known_declined(self) -> list[str]:
        return list(dict.fromkeys(conv_key(n) for n in self.module.graph.nodes
                                  if _is_conv(n) and _kind(n) in self.float_kinds))

    def build(self, float_convs: list[str], extra_meta: dict[str, str] | None = None) -> tuple[bytes, dict]:
        """(``.tflite`` bytes, :func:`~anyir_edge.export.litert_export.op_report` with ``declined``)
        with ``float_convs`` left float."""
        from ..mobile_export import quiet

        with quiet():  # TensorFlow's import-time log lines
            from litert_torch.quantize import pt2e_quantizer, quant_config

        keep = set(float_convs)
        # litert-torch only reads whether the quantizer is static; the annotations are XNNPACKQuantizer's
        config = quant_config.QuantConfig(pt2e_quantizer=pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)))
        try:
            entries = {name: (self.quantized(name, keep), torch.zeros(1, 3, *self.sizes[name])) for name in self.programs}
            for module, _ in entries.values():
                # already in eval form (move_exported_model_to_eval), but an exported module keeps
                # training=True and cannot be .eval()-ed; litert-torch warns on the flag alone
                module.training = False
        except Exception as e:
            from ...errors import first_line

            raise ExportError(f"LiteRT INT8 quantization failed ({first_line(e)})") from None
        self.log(f"  converting {len(entries)} quantized signature(s) with litert-torch ...")
        buf, report = convert_signatures(entries, quant_config=config)
        report["declined"] = self.declined(report["int8_ops"], keep)
        report["int8_beyond_annotated"] = self.beyond(report["int8_ops"], keep)
        if report["declined"]:
            return b"", report
        return artifact.write_tflite(buf, dict(self.meta, **(extra_meta or {}))), report

    def _counts(self, int8_ops: dict, keep: set):
        """Per kind: (quantized convolutions in the graph, fewest INT8 ops of the kind in a
        signature, most), and the quantized convolutions."""
        convs = [n for n in self.module.graph.nodes if _is_conv(n) and conv_key(n) not in keep]
        want = collections.Counter(_kind(n) for n in convs)
        out = {}
        for kind, ops in CONV_KINDS.items():
            got = [sum(counts.get(op, 0) for op in ops) for counts in int8_ops.values()]
            out[kind] = (want[kind], min(got), max(got))
        return out, convs

    def beyond(self, int8_ops: dict, keep: set) -> dict[str, int]:
        """Per kind, the INT8 ops the converter made beyond the convolutions we quantized (most in
        one signature)."""
        counts, _ = self._counts(int8_ops, keep)
        return {kind: most - want for kind, (want, _, most) in counts.items() if most > want}

    def declined(self, int8_ops: dict, keep: set) -> list[str]:
        """The quantized convolutions of every kind whose INT8 ops fall short in some signature.
        Every method traces the same graph, so each signature must hold as many INT8 ops of a kind
        as the graph has quantized convolutions of it."""
        counts, convs = self._counts(int8_ops, keep)
        out = []
        for kind, (want, fewest, _) in counts.items():
            if fewest < want:
                if fewest:
                    raise ExportError(f"LiteRT INT8: {fewest} of {want} quantized {kind} convolutions became INT8 "
                                      "ops; which ones cannot be told apart")
                out += [conv_key(n) for n in convs if _kind(n) == kind]
        return list(dict.fromkeys(out))
