"""``anyir-export --to executorch`` (issue #22): a ``.pte`` with the XNNPACK delegate, certified on
ExecuTorch's own runtime, opened by ``Restorer`` like every engine (metadata from the program's
constant method, batch image by image, tiles where the image exceeds the size it was built for).
With ``--sizes`` the program has one static method per size instead, and the Restorer runs an
image whole only at those sizes.

Runs where ExecuTorch is installed (``pip install anyir-edge[executorch]``; CI installs it).  The
network is a small AnyIR (dim 8, one block per level; ``small_pte`` in conftest.py) so lowering
takes a minute, not five.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("executorch")

from anyir_edge.errors import EngineError  # noqa: E402
from anyir_edge.export import ExportError, export  # noqa: E402
from anyir_edge.export.parity import parity_inputs  # noqa: E402
from anyir_edge.runtime import Restorer  # noqa: E402
from anyir_edge.runtime.errors import ImageError  # noqa: E402

from conftest import SMALL_ANYIR, SMALL_PTE_MAX_SIDE, SMALL_PTE_SIZES, perturbed  # noqa: E402

MAX_SIDE = SMALL_PTE_MAX_SIDE
SMALL = SMALL_ANYIR


@pytest.fixture(scope="module")
def model():
    return perturbed("anyir-tiny", seed=4, **SMALL)  # the network conftest's small_pte exported


@pytest.fixture(scope="module")
def pte(small_pte):
    return small_pte


def test_the_program_is_certified_on_executorchs_runtime(pte):
    cert = json.loads(pte.certificate_path.read_text())
    assert pte.path.suffix == ".pte" and cert["engine"] == pte.path.name
    assert cert["passed"] and cert["summary"]["psnr_min"] >= 60
    assert cert["engine_backend"].startswith("executorch (XNNPACK")
    assert cert["max_side"] == MAX_SIDE and cert["deploy_form"] == "mobile" and pte.fft == "fold"
    # a parity input over the bound is shrunk to it (a bounded program runs nothing larger whole)
    sizes = [tuple(r["size"]) for r in cert["inputs"]]
    assert len(sizes) == 4 and sizes[-1] == (MAX_SIDE, MAX_SIDE) and all(max(hw) <= MAX_SIDE for hw in sizes)
    # XNNPACK takes everything but the attention output's reshape (one per block)
    report = cert["delegation"]
    assert set(report["ops_outside_delegate"]) <= {"view_copy"}
    blocks = sum(SMALL["blocks"]) + 3 + SMALL["refine_blocks"]
    assert report["partitions"] <= blocks + 1
    # the share anyir-bench reports: the delegate's compute ops against those left outside
    outside = sum(report["ops_outside_delegate"].values())
    assert report["delegated_ops"] > 20 * outside
    assert report["delegated_share"] == pytest.approx(report["delegated_ops"] / (report["delegated_ops"] + outside), abs=1e-4)


def test_restorer_reads_the_programs_metadata_and_matches_pytorch(pte, model):
    rng = np.random.default_rng(5)
    x = rng.random((2, 3, 37, 45), dtype=np.float32)  # a batch of two, odd size: padded, run one by one
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with Restorer.open(str(pte.path), threads=1, tile=0) as r:
        assert r.backend.kind == "executorch" and r.backend.max_side == MAX_SIDE
        assert r.metadata["anyir_edge.arch"] == "anyir" and r.metadata["anyir_edge.deploy_form"] == "mobile"
        out = r.forward(x)
    assert out.shape == x.shape
    assert 10 * np.log10(1 / np.mean((out - ref) ** 2)) > 60


def test_images_larger_than_the_program_are_tiled(pte, model):
    rng = np.random.default_rng(6)
    img = rng.random((90, 70, 3), dtype=np.float32)
    with Restorer.open(str(pte.path), threads=1) as r:
        tile, overlap = r.plan_tile(90, 70)
        assert 0 < tile <= MAX_SIDE and 0 < overlap < tile // 2
        out = r.restore(img)
        with pytest.raises(ImageError, match="built for"):
            r.restore(img, tile=0)
        with pytest.raises(ImageError, match="larger than"):
            r.restore(img, tile=MAX_SIDE + 8)
        with pytest.raises(EngineError, match="built for H and W up to"):
            r.backend.run(np.zeros((1, 3, 72, 64), np.float32))
    with Restorer.open(model, tile=tile, overlap=overlap) as ref:  # the same tiles on PyTorch
        want = ref.restore(img)
    assert 10 * np.log10(1 / np.mean((out - want) ** 2)) > 60


SIZES = SMALL_PTE_SIZES


@pytest.fixture(scope="module")
def sized_pte(small_pte_sized):
    return small_pte_sized


def _weights(path):
    """(entries, bytes) of a program's named data: the delegate's weights, stored once per content."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    named = deserialize_pte_binary(path.read_bytes()).named_data
    return len(named.pte_data), sum(len(b) for b in named.buffers)


def test_a_program_built_for_sizes_has_one_static_method_each(sized_pte, pte):
    from executorch.runtime import Runtime

    from anyir_edge import artifact

    cert = json.loads(sized_pte.certificate_path.read_text())
    assert cert["passed"] and cert["summary"]["psnr_min"] >= 60 and "max_side" not in cert
    assert cert["sizes"] == ["32x32"] and cert["methods"] == ["restore_32x32"]
    # the parity inputs were fitted to the size, some a few pixels short (padded back by the runtime)
    sizes = [tuple(r["size"]) for r in cert["inputs"]]
    assert len(sizes) == 3 and all(h <= 32 and w <= 32 for h, w in sizes) and sizes[0] in SIZES and sizes[1] not in SIZES
    # static shapes: XNNPACK takes the whole graph, the reshapes the dynamic program leaves outside too
    report = cert["delegation"]
    assert report["ops_outside_count"] == 0 and report["delegated_share"] == 1.0 and report["partitions"] == 1
    program = Runtime.get().load_program(str(sized_pte.path))
    assert set(program.method_names) == {"restore_32x32", artifact.PTE_METADATA_METHOD}
    # the same weights as the dynamic program of the same network
    entries, size = _weights(sized_pte.path)
    assert entries > 50 and (entries, size) == _weights(pte.path)


def test_each_size_runs_its_own_method_and_the_methods_share_the_weights(tmp_path):
    """A two-method program (a small convolution, not from anyir-export): each input size runs the
    method traced for it (any other would refuse its shape), and the weights are stored once."""
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    meta = {"anyir_edge.sizes": "16x16,16x24"}
    two = _foreign_program(tmp_path / "two.pte", conv, None, meta,
                           methods={"restore_16x16": (1, 3, 16, 16), "restore_16x24": (1, 3, 16, 24)})
    one = _foreign_program(tmp_path / "one.pte", conv, None, meta, methods={"restore_16x16": (1, 3, 16, 16)})
    assert _weights(two) == _weights(one) and _weights(one)[0] >= 1
    rng = np.random.default_rng(9)
    with Restorer.open(str(two), threads=1, tile=0) as r:
        assert r.backend.sizes == ((16, 16), (16, 24))
        for w in (16, 24, 16):
            x = rng.random((2, 3, 16, w), dtype=np.float32)  # a batch: image by image through the method
            with torch.no_grad():
                want = conv(torch.from_numpy(x)).numpy()
            assert np.abs(r.forward(x) - want).max() < 1e-5


def test_the_restorer_runs_an_image_whole_at_a_built_size_and_tiles_others(sized_pte, model):
    rng = np.random.default_rng(8)
    with Restorer.open(str(sized_pte.path), threads=1) as r:
        assert r.backend.sizes == ((32, 32),) and r.backend.max_side is None
        assert "sizes 32x32" in r.backend.describe()
        small = rng.random((27, 30, 3), dtype=np.float32)  # pads to 32x32: one whole run
        assert r.plan_tile(27, 30) == (0, r.overlap)
        big = rng.random((70, 50, 3), dtype=np.float32)    # tiles of the square size
        tile, overlap = r.plan_tile(70, 50)
        assert tile == 32 and 0 < overlap <= 8
        outs = [r.restore(small), r.restore(big)]
        with pytest.raises(EngineError, match=r"built for 32x32 only, got 40x40"):
            r.backend.run(np.zeros((1, 3, 40, 40), np.float32))
        with pytest.raises(ImageError, match="does not pad to a size"):
            r.restore(big, tile=0)
    with Restorer.open(model, tile=0) as ref:
        want_small = ref.restore(small)
    with Restorer.open(model, tile=tile, overlap=overlap) as ref:  # the same tiles on PyTorch
        want_big = ref.restore(big)
    for out, want in zip(outs, (want_small, want_big)):
        assert out.shape == want.shape and 10 * np.log10(1 / np.mean((out - want) ** 2)) > 60


@pytest.mark.parametrize("opts,match", [
    ({"sizes": "32", "max_side": 64}, "exclude each other"),
    ({"sizes": "30"}, "multiple of 8"),
    ({"sizes": "big"}, "expected sizes like"),
    ({"max_side": 30}, "multiple of 8"),
    ({"max_side": 8192}, "multiple of 8 from 32"),
    ({"max_side": 24}, "from 32 to"),
    ({"half": True, "int8": True, "sizes": "32"}, "exclude each other"),
    ({"pad_in_graph": True}, "executorch"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, opts, match):
    with pytest.raises(ExportError, match=match):
        export("anyir-paper-tiny", to="executorch", output=str(tmp_path), **opts)
    assert not list(tmp_path.iterdir())


def _foreign_program(path, module, shape, meta: dict | None, methods: dict | None = None):
    """A .pte of ``module`` (not from anyir-export), with ``meta`` as its metadata method if given;
    ``methods``: {method name: input shape} instead of one ``forward`` of ``shape``."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from torch.export import export as torch_export

    from anyir_edge import artifact

    const = {}
    if meta is not None:
        const[artifact.PTE_METADATA_METHOD] = torch.tensor(list(artifact.encode_pte_metadata(meta)), dtype=torch.uint8)
    programs = {name: torch_export(module.eval(), (torch.rand(*dims),))
                for name, dims in (methods or {"forward": shape}).items()}
    edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()], constant_methods=const)
    path.write_bytes(edge.to_executorch().buffer)
    return path


class _AddOne(torch.nn.Module):
    def forward(self, x):
        return x + 1


@pytest.mark.parametrize("shape,meta,match", [
    ((1, 4, 16, 16), {}, "channels"),                                        # not RGB
    ((1, 3, 16, 16), {"anyir_edge.max_side": "big"}, "bad anyir_edge.max_side"),  # corrupt metadata
])
def test_foreign_or_corrupt_programs_are_refused_in_one_line(tmp_path, shape, meta, match):
    p = _foreign_program(tmp_path / "foreign.pte", _AddOne(), shape, meta)
    with pytest.raises(EngineError, match=match) as e:
        Restorer.open(str(p), threads=1)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("methods,meta,match", [
    # its metadata name a size it has no method for: altered after export
    ({"restore_16x16": (1, 3, 16, 16), "restore_16x24": (1, 3, 16, 24)}, {"anyir_edge.sizes": "16x16"},
     "metadata name sizes 16x16 but its methods take 16x16,16x24"),
    ({"restore_16x16": (1, 3, 16, 16), "restore_12x12": (1, 3, 12, 12)}, {}, "12x12, not a multiple"),
    ({"restore_16x16": (2, 3, 16, 16)}, {}, "batch of 2"),
    ({"restore_16x16": (1, 4, 16, 16)}, {}, "channels"),
])
def test_corrupt_programs_built_for_sizes_are_refused_in_one_line(tmp_path, methods, meta, match):
    p = _foreign_program(tmp_path / "sized.pte", _AddOne(), None, meta, methods=methods)
    with pytest.raises(EngineError, match=match) as e:
        Restorer.open(str(p), threads=1)
    assert "\n" not in str(e.value)


def test_a_program_without_metadata_runs_on_trust_with_a_warning(tmp_path):
    from anyir_edge.errors import EngineWarning

    p = _foreign_program(tmp_path / "plain.pte", _AddOne(), (1, 3, 16, 24), None)
    with pytest.warns(EngineWarning, match="no anyir-edge metadata"):
        r = Restorer.open(str(p), threads=1, tile=0)
    x = np.zeros((1, 3, 16, 24), np.float32)
    assert np.allclose(r.forward(x), 1.0) and r.backend.max_side is None
    with pytest.raises(EngineError, match="ExecuTorch failed"):  # its sizes are ExecuTorch's to check
        r.forward(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.parametrize("name", ["promptir-authors-d6", "moce-ir-authors-d4-spread"])
def test_the_authors_promptir_and_moce_ir_lower_whole_to_xnnpack(name, tmp_path):
    """The other architectures' mobile forms on ExecuTorch (the authors' golden fixtures, a static
    method of 64 px): certified, and XNNPACK takes every convolution-side op: PromptIR's prompt
    weights and MoCE-IR's frequency embedding once left a 2-D spatial mean on the portable
    kernels (XNNPACK takes it only kept 4-D); MoCE-IR's expert routing (top-k, scatter, select on
    a few numbers per image) stays there by design."""
    fixture = Path(__file__).parent / "fixtures" / f"{name}.ckpt"
    res = export(str(fixture), to="executorch", output=str(tmp_path), threads=1,
                 inputs=parity_inputs(max_side=128)[:2], sizes="64", log=lambda msg: None)
    cert = res.certificate
    assert cert["passed"] and cert["summary"]["psnr_min"] >= 60 and cert["deploy_form"] == "mobile"
    outside = set(cert["delegation"]["ops_outside_delegate"])
    routing = {"alias_copy", "full_like", "scatter.src", "select_copy.int", "topk"} if name.startswith("moce") else set()
    assert outside <= {"view_copy"} | routing, outside


def test_profile_executorch_sums_xnnpacks_per_operator_times_by_class(sized_pte, pte, tmp_path, capsys):
    """benchmarks/profile_executorch.py: the ETDump of each static method, XNNPACK's operators
    summed by class (their sum within the delegate call's time); a program without static methods
    and a file that is not a program are refused with a one-line argparse error."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "profile_executorch", Path(__file__).resolve().parents[1] / "benchmarks" / "profile_executorch.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(spec.origin).parent))  # its `from _variants import ...`
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.pop(0)
    assert mod.op_class("Convolution (NHWC, F32) DWConv") == "conv depthwise"
    assert mod.op_class("Fully Connected (NC, F32) GEMM") == "conv 1x1"
    assert mod.op_class("Deconvolution (NHWC, F32) Subconv2D") == "conv kxk"
    assert mod.op_class("Batch Matrix Multiply (NC, F32) GEMM") == "matmul/attention"
    assert mod.op_class("Sigmoid (NC)") == "element-wise"
    out = tmp_path / "prof"
    assert mod.main([str(sized_pte.path), "--threads", "1", "--runs", "2", "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    (rec,) = doc["records"]
    assert rec["size"] == [32, 32] and rec["threads"] == 1
    assert {"conv 1x1", "conv depthwise", "matmul/attention"} <= set(rec["classes"])
    assert 0 < rec["ops_ms"] <= rec["delegate_ms"] * 1.05 and rec["delegate_ms"] <= rec["execute_ms"] * 1.05
    assert sum(c["ops"] for c in rec["classes"].values()) > 50
    assert "| conv depthwise |" in out.with_suffix(".md").read_text()
    for bad, msg in ((pte.path, "no static method"), (tmp_path / "prof.json", "not an ExecuTorch program")):
        with pytest.raises(SystemExit) as e:
            mod.main([str(bad), "--threads", "1"])
        assert e.value.code == 2 and msg in capsys.readouterr().err
