"""``anyir-eval``: PSNR / SSIM of a model on benchmark sets, with identity and classical baselines.

Protocol (see :mod:`anyir_edge.metrics` for the metric conventions):

* Synthetic inputs are generated from the clean image with a per-file seed
  (``noise_seed_for("<set>/<file>", seed)``) and rounded to uint8, as a saved image would be
  (the PromptIR protocol clips and quantises noisy images the same way).
* The model sees float32 RGB in [0, 1]; its output is clipped and rounded to uint8 before the
  metrics.  ``input`` rows are the identity baseline (degraded input vs ground truth).
* Sets: ``cbsd68-15/25/50`` (Gaussian noise on CBSD68, the literature's protocol),
  ``rain100l`` (real pairs), and ``rain-synth``, ``haze-synth``, ``lowlight-synth``, ``blur-synth``
  (synthetic degradations of CBSD68's clean images; always labelled synthetic: ``rain-synth``
  is the training data's streak model, which shows whether a model removes rain at all), and ``clean``
  (CBSD68's clean images as input: a restorer should leave them alone; it catches a model that
  mistakes a clean photo for a degraded one).  Any folder with ``lq/`` and ``gt/`` can be given
  as a set too.
* Identical images have infinite PSNR.  Per-image values keep it (``null`` in JSON); set means
  count it as ``PSNR_CAP`` dB, and the cross-set ``average`` leaves out ``clean`` (not a
  restoration task).  Each method's ``worst`` image is recorded per set.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .. import degradations as D
from ..errors import AnyIRError
from ..metrics import psnr, quantize, ssim
from ..runtime.io import IMAGE_SUFFIXES, read_rgb8

DATA_ENV = "ANYIR_DATA"
PSNR_CAP = 100.0  # dB counted for an identical image in set means
CLEAN = "none"  # degrade of the clean set: the input is the ground truth


def default_data_root() -> Path:
    here = Path(__file__).resolve().parents[2]
    return Path(os.environ.get(DATA_ENV, here.parent / "shared" / "data"))


@dataclass(frozen=True)
class EvalSet:
    name: str
    folder: str
    degrade: str | None = None  # None: paired folder (lq/ + gt/)
    params: dict = field(default_factory=dict)
    synthetic: bool = False
    sigma: float | None = None  # noise level, for the classical denoisers


SETS: dict[str, EvalSet] = {
    "cbsd68-15": EvalSet("cbsd68-15", "CBSD68", "noise", {"noise": {"sigma": 15}}, sigma=15),
    "cbsd68-25": EvalSet("cbsd68-25", "CBSD68", "noise", {"noise": {"sigma": 25}}, sigma=25),
    "cbsd68-50": EvalSet("cbsd68-50", "CBSD68", "noise", {"noise": {"sigma": 50}}, sigma=50),
    "rain100l": EvalSet("rain100l", "Rain100L"),
    "rain-synth": EvalSet("rain-synth", "CBSD68", "rain", synthetic=True),
    "haze-synth": EvalSet("haze-synth", "CBSD68", "haze", synthetic=True),
    "lowlight-synth": EvalSet("lowlight-synth", "CBSD68", "lowlight", synthetic=True),
    "blur-synth": EvalSet("blur-synth", "CBSD68", "blur", synthetic=True),
    "clean": EvalSet("clean", "CBSD68", CLEAN),
}


def resolve_sets(names: list[str]) -> list[EvalSet]:
    out = []
    for n in names:
        if n == "all":
            out.extend(SETS.values())
        elif n in SETS:
            out.append(SETS[n])
        elif Path(n).is_dir():
            out.append(EvalSet(Path(n).name, str(Path(n).resolve())))
        else:
            import difflib

            near = difflib.get_close_matches(n, SETS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise AnyIRError(f"unknown eval set {n!r}{hint}; known: {', '.join(SETS)}, all, or a folder with lq/ and gt/")
    return out


def load_pairs(s: EvalSet, data_root: Path, seed: int = 0, limit: int | None = None):
    """Yield (file name, degraded uint8 RGB, ground truth uint8 RGB)."""
    root = Path(s.folder) if Path(s.folder).is_absolute() else data_root / s.folder
    if s.degrade is None:
        gt_dir, lq_dir = root / "gt", root / "lq"
        if not gt_dir.is_dir() or not lq_dir.is_dir():
            raise AnyIRError(f"{root}: expected lq/ and gt/ folders for set {s.name!r} (data root: set --data or {DATA_ENV})")
        files = sorted(p for p in gt_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        if not root.is_dir():
            raise AnyIRError(f"{root}: folder for set {s.name!r} not found (set --data or {DATA_ENV})")
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise AnyIRError(f"{root}: no images for set {s.name!r}")
    for p in files[:limit]:
        gt = read_rgb8(p)
        if s.degrade is None:
            lq_path = lq_dir / p.name
            if not lq_path.is_file():
                raise AnyIRError(f"{lq_path}: missing degraded image for {p.name}")
            lq = read_rgb8(lq_path)
            if lq.shape != gt.shape:
                raise AnyIRError(f"{lq_path}: size differs from its ground truth")
        elif s.degrade == CLEAN:
            lq = gt.copy()
        else:
            rng = np.random.default_rng(D.noise_seed_for(f"{s.name}/{p.name}", seed))
            lq = quantize(D.degrade(gt.astype(np.float32) / 255.0, s.degrade, rng=rng, params=s.params or None))
        yield p.name, lq, gt


def classical_baseline(name: str, s: EvalSet) -> Callable[[np.ndarray], np.ndarray] | None:
    """A classical restorer for set ``s`` (uint8 RGB -> uint8 RGB), or None if none applies."""
    if s.sigma is None:
        return None
    if name == "nlm":  # OpenCV non-local means, told the noise level (h = 0.6 sigma: best of 0.3-1.2 on 4 CBSD68 images)
        h = 0.6 * s.sigma
        return lambda img: cv2.cvtColor(cv2.fastNlMeansDenoisingColored(
            cv2.cvtColor(img, cv2.COLOR_RGB2BGR), None, h, h, 7, 21), cv2.COLOR_BGR2RGB)
    if name == "bm3d":  # CBM3D (PyPI bm3d), told the noise level
        try:
            import bm3d
        except ImportError:
            raise AnyIRError("baseline 'bm3d' needs the bm3d package: pip install 'anyir-edge[eval]'") from None
        return lambda img: quantize(bm3d.bm3d_rgb(img.astype(np.float32) / 255.0, s.sigma / 255.0))
    raise AnyIRError(f"unknown baseline {name!r}; known: nlm, bm3d")


def evaluate(restore: Callable[[np.ndarray], np.ndarray], sets: list[EvalSet], data_root: Path,
             seed: int = 0, limit: int | None = None, baselines: tuple[str, ...] = (),
             progress: bool = True) -> dict:
    """Run ``restore`` (float32 RGB [0,1] HxWx3 -> same) on each set; return the results dict."""
    from tqdm import tqdm

    results: dict = {"sets": {}, "protocol": {"rounding": "uint8", "data_range": 255,
                                              "ssim": "Wang 2004, 11x11 Gaussian sigma 1.5 (scikit-image gaussian_weights)",
                                              "seed": seed}}
    for s in sets:
        pairs = list(load_pairs(s, data_root, seed, limit))
        rows = []
        methods = {"model": lambda lq: quantize(restore(lq.astype(np.float32) / 255.0))}
        for b in baselines:
            fn = classical_baseline(b, s)
            if fn is not None:
                methods[b] = fn
        for name, lq, gt in tqdm(pairs, desc=s.name, disable=not progress, leave=False):
            row = {"image": name, "input": {"psnr": psnr(lq, gt), "ssim": ssim(lq, gt)}}
            for m, fn in methods.items():
                out = fn(lq)
                if out.shape != gt.shape:
                    raise AnyIRError(f"{m} returned shape {out.shape} for {name}, expected {gt.shape}")
                row[m] = {"psnr": psnr(out, gt), "ssim": ssim(out, gt)}
            rows.append(row)
        summary = {"n": len(rows), "synthetic": s.synthetic, "per_image": rows}
        for m in ["input", *methods]:
            summary[m] = {"psnr": float(np.mean([min(r[m]["psnr"], PSNR_CAP) for r in rows])),
                          "ssim": float(np.mean([r[m]["ssim"] for r in rows]))}
            worst = min(rows, key=lambda r: r[m]["psnr"])
            summary[m]["worst"] = {"image": worst["image"], "psnr": worst[m]["psnr"], "ssim": worst[m]["ssim"]}
        results["sets"][s.name] = summary
    names = [s.name for s in sets if s.degrade != CLEAN]
    if names:
        results["average"] = {m: {k: float(np.mean([results["sets"][n][m][k] for n in names])) for k in ("psnr", "ssim")}
                              for m in ("input", "model")}
    return results


def markdown_table(results: dict) -> str:
    methods = []
    for s in results["sets"].values():
        for m in s:
            if isinstance(s[m], dict) and "psnr" in s[m] and m not in methods:
                methods.append(m)
    head = "| set | n | " + " | ".join(f"{m} PSNR / SSIM" for m in methods) + " |"
    lines = [head, "|" + "---|" * (2 + len(methods))]
    for name, s in results["sets"].items():
        label = name + (" (synthetic)" if s["synthetic"] else "")
        cells = [("identical" if s[m]["psnr"] >= PSNR_CAP else f"{s[m]['psnr']:.2f} / {s[m]['ssim']:.4f}")
                 if m in s else "-" for m in methods]
        lines.append(f"| {label} | {s['n']} | " + " | ".join(cells) + " |")
    if "average" in results:
        cells = [f"{results['average'][m]['psnr']:.2f} / {results['average'][m]['ssim']:.4f}"
                 if m in results["average"] else "-" for m in methods]
        lines.append("| average | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(results: dict, path: Path) -> None:
    from ..fsutil import write_json as _write

    def finite(o):  # json.dumps writes inf as Infinity, which is not JSON; identical images -> null
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: finite(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [finite(v) for v in o]
        return o

    _write(path, finite(results), indent=1)
