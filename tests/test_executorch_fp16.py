"""``anyir-export --to executorch --half`` (issue #22): the mobile form with float16 weights and
compute behind float32 input and output (XNNPACK's FP16 kernels), certified on ExecuTorch's runtime
against the 45 dB FP16 gate.

The network is conftest's small AnyIR (dim 8, one block per level) at one static size, 32x32, so
the lowering takes about a minute; the dynamic (``--max-side``) form goes through the same code
with a bounded program (tests/test_executorch.py covers that path in FP32).
"""
import json

import pytest

pytest.importorskip("executorch")

from anyir_edge.export import PARITY_GATES_DB  # noqa: E402

from conftest import export_small_sized, small_pte_vs_pytorch  # noqa: E402


@pytest.fixture(scope="module")
def fp16_pte(tmp_path_factory):
    return export_small_sized(tmp_path_factory.mktemp("et-fp16"), half=True)


def test_fp16_program_is_certified_against_the_fp16_gate(fp16_pte):
    cert = json.loads(fp16_pte.certificate_path.read_text())
    assert fp16_pte.path.name == "small-fp16.pte"  # never overwrites the FP32 small.pte
    assert cert["passed"] and cert["precision"] == "fp16" and cert["threshold_db"] == PARITY_GATES_DB["fp16"]
    assert "float16" in cert["compute"] and "float32" in cert["weights_storage"]
    # really reduced precision: an FP32 program of this network certifies at 120+ dB, FP16 rounding
    # of every activation cannot get there
    assert PARITY_GATES_DB["fp16"] <= cert["summary"]["psnr_min"] < 100
    # XNNPACK runs the convolutions (what it leaves on portable kernels is reported, not hidden)
    rep = cert["delegation"]
    assert rep["partitions"] >= 1 and rep["delegated_share"] > 0.8
    assert rep["ops_outside_count"] == sum(rep["ops_outside_delegate"].values())
    assert "convolution" not in " ".join(rep["ops_outside_delegate"])


def test_the_restorer_runs_the_fp16_program_near_pytorch(fp16_pte):
    psnr = small_pte_vs_pytorch(fp16_pte.path, "fp16")
    assert PARITY_GATES_DB["fp16"] < psnr < 100


def test_fp16_program_stores_the_same_weight_bytes_as_fp32(fp16_pte, small_pte_sized):
    """Why an FP16 .pte is no smaller than FP32 (docs/mobile.md, the certificate's ``weights_storage``):
    ExecuTorch's XNNPACK serializer writes convolution weights and biases as float32 whatever the
    program's dtype, and XNNPACK converts them to float16 when it loads the program. Both programs
    are the same network (conftest's small_net, 32x32); if an ExecuTorch upgrade starts storing
    float16, this fails and the certificate's text and the docs must change with it."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    def weight_buffers(path):
        return sorted(len(b) for b in deserialize_pte_binary(path.read_bytes()).named_data.buffers)

    fp16, fp32 = weight_buffers(fp16_pte.path), weight_buffers(small_pte_sized.path)
    assert fp16 and fp16 == fp32
