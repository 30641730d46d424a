import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

#: pytest-xdist worker ("gw0", ...) or None: the suite runs on 2 workers (setup.cfg), each on one
#: core; tracing and lowering are single-threaded Python, so two of them at once use both cores
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
torch.set_num_threads(1 if XDIST_WORKER else min(2, os.cpu_count() or 1))

# the console scripts (anyir-export, ...) of the environment running the tests, also when
# pytest is started as .venv/bin/python -m pytest without activating the venv
_bin = os.path.dirname(sys.executable)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

ROOT = Path(__file__).resolve().parents[1]


#: test files whose tests share session fixtures (small_pte, small_pte_sized) run on one worker
_SHARED_GROUPS = {"test_executorch.py": "executorch", "test_cpp_runtime.py": "executorch"}
#: the groups that take longest (CI durations), scheduled first; the rest in file order
_LONG_FIRST = ("executorch", "test_precision.py", "test_executorch_int8.py", "test_executorch_fp16.py", "test_export.py",
               "test_architectures.py", "test_coreml.py", "test_bench.py")


def _group(nodeid: str) -> str:
    """A test's scheduling group: its file (a module-scoped fixture is built once, not once per
    worker), the files of :data:`_SHARED_GROUPS` together."""
    name = nodeid.split("::")[0].rsplit("/", 1)[-1]
    return _SHARED_GROUPS.get(name, name)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist: whole groups (:func:`_group`) per worker, in collection order (``--dist
    loadgroup``'s markers are not read by pytest-xdist 3.8 under pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(config, items):
    """The longest groups first, so that neither worker is left with a long one at the end."""
    rank = {g: i for i, g in enumerate(_LONG_FIRST)}
    items.sort(key=lambda it: rank.get(_group(it.nodeid), len(rank)))


def data_dir() -> Path:
    """The shared benchmark data: $ANYIR_DATA, else ../shared/data beside the project."""
    return Path(os.environ.get("ANYIR_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"benchmark data not found at {d} (set ANYIR_DATA)")
    return d


def perturbed(name: str = "anyir-tiny", seed: int = 0, **overrides):
    """A model with random weights pushed away from the near-identity initialisation."""
    from anyir_edge.models import create

    torch.manual_seed(seed)
    m = create(name, **overrides)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m.eval()


def saved_perturbed(folder: Path, filename: str, name: str = "anyir-tiny") -> Path:
    """:func:`perturbed` saved as a safetensors checkpoint ``folder/filename`` (the export tests' input)."""
    import anyir_edge

    path = Path(folder) / filename
    anyir_edge.save_model(perturbed(name), path)
    return path


@pytest.fixture
def tiny_model():
    """anyir-tiny with random weights pushed away from the near-identity initialisation."""
    return perturbed()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's engines (the machine is shared; results do not change)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def int8_weight_absmax(model) -> int:
    """Largest |q| of the INT8 weight initializers that feed a DequantizeLinear in a Q/DQ graph."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    vals = [int(abs(numpy_helper.to_array(inits[n.input[0]]).astype(int)).max()) for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == 3]
    assert vals, "no INT8 weights in the graph"
    return max(vals)


#: a small AnyIR (dim 8, one block per level) for the ExecuTorch tests: lowering it takes seconds
SMALL_ANYIR = dict(dim=8, blocks=[1, 1, 1, 1], refine_blocks=1)
SMALL_PTE_MAX_SIDE = 64


def small_net():
    """The network of every ExecuTorch / Core ML test program: :data:`SMALL_ANYIR`, :func:`perturbed` with seed 4."""
    return perturbed("anyir-tiny", seed=4, **SMALL_ANYIR)


def export_small(model, folder, **options):
    """``anyir-export`` of ``model`` as a user runs it (from a saved checkpoint, ``small.safetensors``
    in ``folder``), on one thread, quietly; ``options``: ``to`` and the target's options."""
    import anyir_edge
    from anyir_edge.export import export

    ckpt = folder / "small.safetensors"
    anyir_edge.save_model(model, ckpt)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return export(str(ckpt), output=str(folder), threads=1, log=lambda msg: None, **options)
    finally:
        torch.set_num_threads(old)


def small_pte_vs_pytorch(path, precision: str) -> float:
    """PSNR against PyTorch of an :func:`export_small_sized` program run by ``Restorer`` on a 30x29
    image (padded to 32x32: one whole run), after checking that the program says it is ``precision``
    with one method per :data:`SMALL_PTE_SIZES`."""
    from anyir_edge.runtime import Restorer

    img = np.random.default_rng(3).random((30, 29, 3), dtype=np.float32) * 0.8 + 0.1
    with Restorer.open(str(path), threads=1) as r:
        assert r.metadata["anyir_edge.precision"] == precision and r.backend.sizes == SMALL_PTE_SIZES
        out = r.restore(img)
    with Restorer.open(small_net(), tile=0) as ref:
        want = ref.restore(img)
    assert out.dtype == np.float32 and out.shape == img.shape  # the FP32 engine's interface
    return float(10 * np.log10(1 / np.mean((np.asarray(out, np.float64) - want) ** 2)))


#: ``small_pte_sized``'s sizes (one static method each; one size: each method costs a lowering, about
#: 70 s in CI; several methods are tested on small foreign programs in tests/test_executorch.py)
SMALL_PTE_SIZES = ((32, 32),)


def export_small_sized(folder, **options):
    """``anyir-export --to executorch --sizes 32x32`` (:data:`SMALL_PTE_SIZES`) of :func:`small_net`,
    certified on three parity inputs; ``options``: more of the target's options (``int8``, ``half``)."""
    from anyir_edge.export.parity import parity_inputs

    sizes = ",".join(f"{h}x{w}" for h, w in SMALL_PTE_SIZES)
    return export_small(small_net(), folder, to="executorch", sizes=sizes, inputs=parity_inputs(max_side=128)[:3],
                        **options)


@pytest.fixture(scope="session")
def small_pte_sized(tmp_path_factory):
    """``anyir-export --to executorch --sizes 32`` of the same network as :func:`small_pte`: one
    static method per size (tests/test_executorch.py, tests/test_cpp_runtime.py)."""
    pytest.importorskip("executorch")
    return export_small_sized(tmp_path_factory.mktemp("et-sized"))


@pytest.fixture(scope="session")
def small_pte(tmp_path_factory):
    """``anyir-export --to executorch --max-side 64`` of :func:`perturbed` small AnyIR (seed 4),
    exported once per session (tests/test_executorch.py, tests/test_cpp_runtime.py)."""
    pytest.importorskip("executorch")
    from anyir_edge.export.parity import parity_inputs

    m = SMALL_PTE_MAX_SIDE
    # crops of the shipped photos at odd sizes (padded by the runtime) within the program's bound, and one
    # 128x128 photo the exporter must shrink to the bound itself
    inputs = parity_inputs(max_side=128)
    inputs = [(n, deg, s, img[:m - 3, :m - 9]) for n, deg, s, img in inputs[:3]] + [inputs[-1]]
    return export_small(small_net(), tmp_path_factory.mktemp("et"),
                        to="executorch", max_side=m, inputs=inputs)
