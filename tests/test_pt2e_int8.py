"""The INT8 phone programs' shared pieces (:mod:`anyir_edge.export.precision.pt2e_int8`) and how the
LiteRT quantizer tells which convolutions its converter kept float
(:meth:`anyir_edge.export.precision.litert_int8.LiteRTQuantizer.declined`), on a small traced module:
no phone toolchain needed."""
import pytest
import torch

from anyir_edge.export import ExportError
from anyir_edge.export.precision.litert_int8 import LiteRTQuantizer
from anyir_edge.export.precision.pt2e_int8 import conv_keys, rule_float_convs


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.body = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.up = torch.nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.tail = torch.nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        return self.tail(self.up(self.dw(self.body(self.head(x)))))


@pytest.fixture(scope="module")
def quantizer():
    from torch.export import export

    q = LiteRTQuantizer.__new__(LiteRTQuantizer)  # only the traced graph: no programs, samples or converter
    q.module = export(_Net().eval(), (torch.rand(1, 3, 16, 16),)).module()
    return q


def test_rules_leave_the_image_reader_and_output_writer_float(quantizer):
    assert conv_keys(quantizer.module) == ["head", "body", "dw", "up", "tail"]
    assert rule_float_convs(quantizer.module) == {"head": "reads the image", "tail": "writes the output"}


def test_a_kind_of_convolution_with_no_int8_ops_is_declined_by_name(quantizer):
    keep = {"head", "tail"}
    full = {"restore_16x16": {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "TRANSPOSE_CONV": 1}}
    assert quantizer.declined(full, keep) == []
    no_transpose = {"restore_16x16": {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1}, "restore_32x32": full["restore_16x16"]}
    assert quantizer.declined(no_transpose, keep) == ["up"]  # any signature short of the count declines the kind
    assert quantizer.declined({"restore_16x16": {"TRANSPOSE_CONV": 1}}, keep) == ["body", "dw"]
    assert quantizer.declined({"restore_16x16": {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1}}, keep | {"up"}) == []


def test_a_kind_only_partly_int8_is_an_error_not_a_guess(quantizer):
    with pytest.raises(ExportError, match="1 of 2 quantized conv2d convolutions"):
        quantizer.declined({"restore_16x16": {"CONV_2D": 1, "TRANSPOSE_CONV": 1}}, {"head", "tail"})


def test_litert_leaves_transposed_convolutions_float_and_counts_what_its_converter_quantizes_itself(quantizer):
    assert quantizer.known_declined() == ["up"]  # litert-torch 0.10 keeps an annotated TRANSPOSE_CONV float
    keep = {"head", "tail", "up"}
    ops = {"restore_16x16": {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "TRANSPOSE_CONV": 1}}
    assert quantizer.declined(ops, keep) == [] and quantizer.beyond(ops, keep) == {"conv_transpose2d": 1}
    assert quantizer.beyond({"restore_16x16": {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1}}, keep) == {}
