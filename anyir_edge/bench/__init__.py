"""``anyir-bench``: latency, memory, size, cost and parity of every engine, side by side.

For each backend x precision x size the harness reports a status (``ok``, ``parity failed``,
``export failed``, ``run failed``, or ``skipped`` with the reason), the artifact's size,
parameters and MACs (``torch.utils.flop_counter`` FLOPs / 2 on the reference model, at that
size), latency median / p90 / min over ``runs`` timed runs after ``warmup`` runs,
megapixels per second, the peak RSS of a fresh subprocess that ran only that engine, and
parity against the PyTorch fp32 reference forward (``fft_mode="fft"``) on a real photo
(the largest shipped asset resized to the size and degraded with sigma-25 noise, seeded):
PSNR in dB (data range 1, raw outputs) and max abs error.  Backends run one at a time.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import DEFAULT_MODEL
from ..artifact import engine_size_mb
from ..errors import AnyIRError, first_line
from ..fsutil import atomic_path
from ..export import PARITY_GATES_DB, ParityError

from ..runtime import backends as _backends

BACKENDS = tuple(_backends.names())  # the runtime's registry
PRECISIONS = ("fp32", "fp16", "int8")
STATUS = ("ok", "parity failed", "export failed", "run failed", "skipped")
TASKS = {"denoise15": "cbsd68-15", "denoise25": "cbsd68-25", "denoise50": "cbsd68-50", "derain": "rain100l",
         "dehaze": "haze-synth", "lowlight": "lowlight-synth", "deblur": "blur-synth"}
ROW_FIELDS = ("model", "backend", "precision", "size", "status", "reason", "artifact_mb", "params", "macs", "latency_ms",
              "megapixels_per_s", "gflops", "peak_pct", "peak_rss_mb", "parity_psnr_db", "parity_max_abs", "quality", "engine",
              "delegated_share")


class BenchError(AnyIRError):
    pass


def delegated_share(artifact) -> float | None:
    """The share of compute ops a phone engine's delegate runs, from its certificate (ExecuTorch
    records XNNPACK's partitioning at export); None where none is recorded (LiteRT applies its
    XNNPACK delegate when the interpreter loads and does not report a share)."""
    from ..artifact import find_certificate

    cert = find_certificate(artifact)
    if cert is None:
        return None
    try:
        share = (json.loads(cert.read_text()).get("delegation") or {}).get("delegated_share")
    except (OSError, ValueError, AttributeError):
        return None
    return float(share) if isinstance(share, (int, float)) and not isinstance(share, bool) else None


def availability(backend: str, precision: str) -> str | None:
    """None when (backend, precision) can run here, else the reason it is skipped."""
    if backend not in BACKENDS:
        raise BenchError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise BenchError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    why = _backends.is_available(backend)
    if why:
        return why
    if backend == "tensorrt" and precision == "int8":
        return "int8 needs a calibration folder (anyir-export --to trt --int8)"
    if backend == "torch" and precision != "fp32":
        return f"{precision} PyTorch is not benchmarked (the fp32 reference; reduced precision: onnxruntime/openvino)"
    return None


def environment(threads: int | None) -> dict:
    import torch

    from ..runtime.backends import cpu_info, physical_cores

    cpu = cpu_info()
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("onnxruntime", "openvino", "tensorrt", "onnx"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    from .. import __version__

    return {"cpu": cpu["model"], "cpu_int8_isa": cpu["int8_isa"], "logical_cores": os.cpu_count(), "physical_cores": physical_cores(),
            "threads": threads or physical_cores(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(), "versions": versions, "anyir_edge": __version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def bench_input(size: int, seed: int = 25) -> np.ndarray:
    """A real photo crop at ``size`` x ``size``, with sigma-25 noise: (1, 3, S, S) float32."""
    import cv2

    from ..degradations import degrade
    from ..export.parity import load_assets

    name, img = max(load_assets(), key=lambda a: a[1].shape[0] * a[1].shape[1])
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC if size > min(img.shape[:2]) else cv2.INTER_AREA)
    img = degrade(np.clip(img, 0, 1), "noise", rng=seed, params={"noise": {"sigma": 25}})
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)


def parity(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(PSNR dB capped at 200, max abs error) of an engine output against the reference."""
    from ..export.parity import psnr

    return psnr(out, ref), float(np.abs(out.astype(np.float64) - ref).max())


def latency_stats(times_s: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times_s)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return {"median": statistics.median(ms), "p90": p90, "min": ms[0], "runs": len(ms)}


@dataclass
class Settings:
    model: str = DEFAULT_MODEL
    sizes: tuple[int, ...] = (224,)
    backends: tuple[str, ...] = ("torch", "onnxruntime", "openvino", "tensorrt")
    precisions: tuple[str, ...] = ("fp32",)
    threads: int | None = None
    runs: int = 5
    warmup: int = 2
    torch_fft: str = "fft"
    data: str | None = None
    task: str | None = None
    limit: int | None = None
    workdir: str | None = None
    timeout: int = 1800
    # a configuration name benchmarked with random weights (cost and speed of configurations that
    # ship no weights; parity is still engine against reference)
    random_weights: bool = False


def _run_worker(spec: dict, workdir: Path, timeout: int) -> dict:
    path = workdir / f"spec-{spec['backend']}-{spec['size']}.json"
    path.write_text(json.dumps(spec))
    env = dict(os.environ)
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    try:
        r = subprocess.run([sys.executable, "-m", "anyir_edge.bench.worker", str(path)], capture_output=True,
                           text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in r.stdout.splitlines():
        if line.startswith("ANYIR_BENCH_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    tail = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
    return {"error": f"worker crashed: {tail[:200]}"}


def gemm_peak(threads: int | None, workdir: Path, timeout: int = 300, n: int = 1024) -> dict:
    """This machine's float32 GEMM peak at ``threads``, measured in a fresh worker process as the
    engines run (:func:`anyir_edge.bench.worker.gemm_peak`): ``{"gflops", "n", "threads"}``, or
    ``{"error"}`` when it could not be measured."""
    return _run_worker({"kind": "gemm", "backend": "gemm", "size": n, "threads": threads, "warmup": 3, "runs": 15},
                       workdir, timeout)


def add_peak(rows: list[dict], peak_gflops: float | None) -> list[dict]:
    """Each measured row's achieved rate: GFLOP/s = 2 x the reference network's MACs / median
    latency (the useful work; zero-padded deploy channels are not counted), and its percentage
    of ``peak_gflops``."""
    for r in rows:
        lat = r.get("latency_ms")
        if lat and r.get("macs"):
            r["gflops"] = 2 * r["macs"] / (lat["median"] / 1000) / 1e9
            r["peak_pct"] = 100 * r["gflops"] / peak_gflops if peak_gflops else None
    return rows


def random_model(name: str, seed: int = 0):
    """Configuration ``name`` with random weights pushed away from the near-identity initialisation."""
    import torch

    from ..models import create

    try:
        m = create(name, fft_mode="fft")
    except ValueError as e:
        raise BenchError(f"--random-weights: {e}") from None
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return m.eval()


class Bench:
    """Runs the grid; ``artifact_for`` and ``run`` can be replaced (tests, other engines)."""

    def __init__(self, settings: Settings, progress: bool = True, log=None):
        self.s = settings
        self.progress = progress
        self.log = log or (lambda m: print(m, file=sys.stderr))
        self._own_workdir = settings.workdir is None
        self.workdir = Path(settings.workdir or tempfile.mkdtemp(prefix="anyir-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        from ..models.checkpoint import load_model

        self.model = random_model(settings.model) if settings.random_weights else load_model(settings.model, fft_mode="fft")
        self.checkpoint = self._checkpoint()

    def _checkpoint(self) -> Path:
        from ..models.checkpoint import save_model

        p = Path(self.s.model)
        if p.is_file() and not self.s.random_weights:
            return p
        return save_model(self.model, self.workdir / f"{self.model.name or 'model'}.safetensors")

    def artifact_for(self, backend: str, precision: str, log=None) -> Path:
        """The engine file for (backend, precision); raises on export failure.

        ``log`` gets the exporter's progress lines (an ExecuTorch INT8 export calibrates and lowers for
        tens of minutes; without them a run looks hung)."""
        if backend == "torch":
            return self.checkpoint
        from ..export import export

        to = _backends.get(backend).export_target
        extra = {"fp16": {"half": True}, "int8": {"int8": True}}.get(precision, {})
        if backend in ("executorch", "litert"):
            # static shapes, one method / signature per benchmarked size: what a phone app ships for a
            # fixed camera size; ExecuTorch plans each method's memory for its own size (a --max-side
            # program plans every run for the bound, and XNNPACK takes the whole static graph)
            extra["sizes"] = ",".join(str(max(16, -(-size // 8) * 8)) for size in self.s.sizes)
        if backend == "tensorrt" and precision == "int8":
            raise BenchError("tensorrt int8 needs a calibration folder (anyir-export --to trt --int8 --calib DIR)")
        # the exporter's own parity inputs and gates: an engine anyir-export refuses is not benchmarked
        res = export(self.model, to=to, output=self.workdir / f"{backend}-{precision}",
                     threads=self.s.threads, log=log or (lambda m: None), **extra)
        return res.path

    def _export_log(self, bar, backend: str, precision: str):
        """Export progress: the bar's postfix when there is a bar, else one line per step on ``self.log``."""
        def log(msg: str) -> None:
            msg = first_line(msg)
            if self.progress:
                bar.set_postfix_str(f"{backend} {precision}: {msg}"[:100])
            else:
                self.log(f"anyir-bench: {backend} {precision} export: {msg}")
        return log

    def run(self, backend: str, artifact: Path, size: int, x_path: Path) -> dict:
        spec = {"backend": backend, "artifact": str(artifact), "size": size, "threads": self.s.threads,
                "runs": self.s.runs, "warmup": self.s.warmup, "torch_fft": self.s.torch_fft,
                "input": str(x_path), "output": str(self.workdir / f"out-{backend}-{size}.npy")}
        if self.s.data and self.s.task:
            spec.update({"eval_set": TASKS[self.s.task], "data": self.s.data, "limit": self.s.limit})
        res = _run_worker(spec, self.workdir, self.s.timeout)
        if "error" not in res:
            res["output"] = np.load(spec["output"])
        return res

    def rows(self) -> list[dict]:
        from tqdm import tqdm

        from ..models.complexity import count_macs, count_params

        s = self.s
        params = count_params(self.model)
        macs = {size: count_macs(self.model, size) for size in s.sizes}
        inputs, refs = {}, {}
        for size in s.sizes:
            x = bench_input(size)
            inputs[size] = self.workdir / f"input-{size}.npy"
            np.save(inputs[size], x)
            import torch

            with torch.inference_mode():
                refs[size] = self.model(torch.from_numpy(x)).numpy()
        grid = [(b, p) for b in s.backends for p in s.precisions]
        out = []
        bar = tqdm(total=len(grid) * len(s.sizes), desc="anyir-bench", disable=not self.progress, leave=False)
        for backend, precision in grid:
            skip = availability(backend, precision)
            artifact, err, share = None, None, None
            if skip is None:
                bar.set_postfix_str(f"{backend} {precision}: export")
                try:
                    artifact = self.artifact_for(backend, precision, log=self._export_log(bar, backend, precision))
                    share = delegated_share(artifact)
                except ParityError as e:  # the gate it missed; the rejected engine's temporary path means nothing here
                    err = f"{e.failure}: engine rejected" if e.failure else first_line(e)
                except Exception as e:  # reported as a status
                    err = first_line(e)
            for size in s.sizes:
                row = {k: None for k in ROW_FIELDS}
                row.update(model=self.model.name or Path(self.s.model).stem, backend=backend, precision=precision, size=size, params=params, macs=macs[size])
                if skip:
                    row.update(status="skipped", reason=skip)
                elif err:
                    row.update(status="export failed", reason=err)
                else:
                    bar.set_postfix_str(f"{backend} {precision} {size}: run")
                    row["artifact_mb"] = engine_size_mb(artifact)
                    row["delegated_share"] = share
                    res = self.run(backend, artifact, size, inputs[size])
                    if "error" in res:
                        row.update(status="run failed", reason=res["error"])
                    else:
                        lat = latency_stats(res["times_s"])
                        db, mx = parity(res["output"], refs[size])
                        gate = PARITY_GATES_DB[precision]
                        row.update(latency_ms=lat, megapixels_per_s=size * size / 1e6 / (lat["median"] / 1000),
                                   peak_rss_mb=res["peak_rss_mb"], parity_psnr_db=db, parity_max_abs=mx,
                                   quality=res.get("quality"), engine=res.get("engine"))
                        if db < gate:
                            row.update(status="parity failed", reason=f"{db:.1f} dB < {gate:.0f} dB gate")
                        else:
                            row.update(status="ok", reason="")
                out.append(row)
                bar.update(1)
        bar.close()
        return out

    def close(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def markdown(rows: list[dict], env: dict | None = None) -> str:
    has_q = any(r.get("quality") for r in rows)
    many = len({r.get("model") for r in rows}) > 1
    has_peak = any(r.get("gflops") for r in rows)
    has_deleg = any(r.get("delegated_share") is not None for r in rows)
    head = (["model"] if many else []) + ["backend", "precision", "size", "status", "MB", "params", "GMACs", "median ms", "p90 ms", "min ms",
            "MP/s"] + (["GFLOP/s", "% GEMM peak"] if has_peak else []) + ["peak RSS MB", "parity dB", "max abs err"] + (["delegated %"] if has_deleg else []) + (["PSNR/SSIM vs GT"] if has_q else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    for r in rows:
        lat = r.get("latency_ms") or {}
        status = r["status"] + (f" ({r['reason']})" if r.get("reason") else "")
        cells = ([r.get("model") or "-"] if many else []) + [r["backend"], r["precision"], str(r["size"]), status, f(r.get("artifact_mb"), ".2f"),
                 f"{r['params'] / 1e6:.3f}M", f"{r['macs'] / 1e9:.2f}", f(lat.get("median"), ".1f"),
                 f(lat.get("p90"), ".1f"), f(lat.get("min"), ".1f"), f(r.get("megapixels_per_s"), ".3f")]
        if has_peak:
            cells += [f(r.get("gflops"), ".1f"), f(r.get("peak_pct"), ".0f")]
        cells += [f(r.get("peak_rss_mb"), ".0f"), f(r.get("parity_psnr_db"), ".1f"), f(r.get("parity_max_abs"), ".1e")]
        if has_deleg:
            share = r.get("delegated_share")
            cells.append("-" if share is None else f"{100 * share:.1f}")
        if has_q:
            q = r.get("quality")
            cells.append(f"{q['psnr']:.2f} / {q['ssim']:.4f} ({q['set']}, n={q['n']})" if q else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if env:
        lines.append("")
        lines.append(f"{env['cpu']}, {env['threads']} threads, torch {env['versions']['torch']}, "
                     f"onnxruntime {env['versions']['onnxruntime']}, openvino {env['versions']['openvino']}; "
                     f"{env['date']}. MACs = torch.utils.flop_counter FLOPs / 2. Latency: median of the timed runs "
                     "after warm-up; peak RSS: a fresh process running one engine."
                     + (f" GEMM peak {env['gemm_peak_gflops']:.1f} GFLOP/s (float32 {env.get('gemm_n', 1024)}^2 matmul, "
                        "same threads, this run); GFLOP/s = 2 x MACs / median latency."
                        if env.get("gemm_peak_gflops") else "")
                     + (" delegated %: compute ops inside the XNNPACK delegate, from the ExecuTorch certificate "
                        "(LiteRT applies its delegate at load time and reports no share)." if has_deleg else ""))
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install anyir-edge[bench]") from None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["status"] in ("ok", "parity failed") and r.get("latency_ms"):
            series.setdefault(f"{r['backend']} {r['precision']}", []).append((r["size"], r["latency_ms"]["median"]))
    if not series:
        raise BenchError("--plot: no configuration ran, nothing to draw")
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xlabel("input size (pixels per side)")
    ax.set_ylabel("median latency (ms)")
    ax.set_yscale("log")
    ax.set_xticks(sorted({r["size"] for r in rows}))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("anyir-bench: latency vs resolution")
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=path.suffix or ".png") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)


def write_json(obj: dict, path: Path) -> None:
    from ..fsutil import write_json as _write

    _write(path, obj, indent=1)
