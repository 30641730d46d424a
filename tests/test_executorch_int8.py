"""``anyir-export --to executorch --int8 --sizes ...`` (issue #22): XNNPACK's pt2e quantizer on the
mobile form's convolutions, one static method per size, certified on ExecuTorch's runtime
against the 35 dB INT8 gate (:mod:`anyir_edge.export.precision.executorch_int8`).

The network is conftest's small AnyIR (dim 8, one block per level) with one size, 32x32, so the
quantized lowering takes a minute; calibration uses the built-in crops.
"""
import json

import pytest

pytest.importorskip("executorch")

from anyir_edge.export import ExportError, export  # noqa: E402

from conftest import export_small_sized, small_pte_vs_pytorch  # noqa: E402


@pytest.fixture(scope="module")
def int8_pte(tmp_path_factory):
    return export_small_sized(tmp_path_factory.mktemp("et-int8"), int8=True)


def test_int8_program_passes_the_gate_with_the_rule_convolutions_float(int8_pte):
    cert = json.loads(int8_pte.certificate_path.read_text())
    assert int8_pte.path.name == "small-int8.pte"
    assert cert["passed"] and cert["precision"] == "int8" and cert["threshold_db"] == 35
    rp = cert["reduced_precision"]
    assert rp["method"] == "static" and rp["quantized_nodes"] and rp["candidates"] > len(rp["quantized_nodes"])
    why = set(rp["float_nodes_by_rule"].values())
    assert {"reads the image", "writes the output"} <= why
    assert set(rp["float_nodes"]) >= set(rp["float_nodes_by_rule"])
    # static shapes: XNNPACK takes the whole quantized graph
    assert cert["delegation"]["ops_outside_count"] == 0


def test_the_restorer_runs_the_int8_program_near_pytorch(int8_pte):
    psnr = small_pte_vs_pytorch(int8_pte.path, "int8")
    assert psnr > 30


@pytest.mark.parametrize("opts,match", [
    ({"int8": True}, "needs --sizes"),
    ({"int8": True, "max_side": 64}, "needs --sizes"),
    ({"calib": "."}, "only used with --int8"),
    ({"half": True, "int8": True, "sizes": "32"}, "exclude each other"),
    ({"int8": True, "sizes": "32", "opset": 18}, "executorch"),
])
def test_bad_int8_options_are_refused_before_any_work(tmp_path, opts, match):
    with pytest.raises(ExportError, match=match):
        export("anyir-paper-tiny", to="executorch", output=str(tmp_path), **opts)
    assert not list(tmp_path.iterdir())


def test_later_builds_reuse_the_first_calibration_and_quantize_as_a_fresh_one_would():
    """A build with more convolutions float (declined ones, the search's windows) loads the first
    build's observer statistics instead of calibrating again, and converts to the same module as a
    quantizer calibrated afresh for that float set."""
    import numpy as np
    import torch

    from anyir_edge.export.mobile_export import static_exports
    from anyir_edge.export.precision.executorch_int8 import ExecuTorchQuantizer
    from anyir_edge.export.precision.pt2e_int8 import rule_float_convs

    from conftest import SMALL_PTE_SIZES, small_net

    programs, _ = static_exports(small_net(), "fold", SMALL_PTE_SIZES)
    rng = np.random.default_rng(0)
    samples = [rng.random((1, 3, *SMALL_PTE_SIZES[0]), dtype=np.float32) for _ in range(2)]
    logs = []
    q = ExecuTorchQuantizer(programs, lambda h, w: samples, {}, log=logs.append)
    name = next(iter(programs))
    rules = set(rule_float_convs(q.module))
    q.quantized(name, rules)
    more = rules | set(q.candidates[4:12])
    reused = q.quantized(name, more)
    assert sum("calibrating" in line for line in logs) == 1 and "statistics of the first build" in logs[-1]
    fresh = ExecuTorchQuantizer(programs, lambda h, w: samples, {}).quantized(name, more)
    x = torch.from_numpy(rng.random((1, 3, *SMALL_PTE_SIZES[0]), dtype=np.float32))
    with torch.no_grad():
        a, b = reused(x), fresh(x)
    assert torch.equal(a, b)
