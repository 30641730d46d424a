"""``anyir-eval``: PSNR/SSIM of a model on benchmark sets."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import ArgumentParser, positive_int

EPILOG = """sets: the names --sets lists (from the set registry), 'all', or a folder holding lq/ and gt/.
'clean' feeds CBSD68's clean images: the model should leave them alone (input PSNR is infinite; set means count identical images as 100 dB, the average leaves 'clean' out).
Data root: --data, else $ANYIR_DATA, else ../shared/data.
example: anyir-eval --model anyir-tiny --sets all --baseline nlm --json benchmarks/results/eval-anyir-tiny.json"""


def main(argv: list[str] | None = None) -> int:
    from .. import DEFAULT_MODEL
    from ..eval import SETS, default_data_root, evaluate, markdown_table, resolve_sets, write_json

    ap = ArgumentParser(prog="anyir-eval", description="Evaluate a model's PSNR/SSIM on benchmark sets.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"shipped model name or checkpoint path (default: {DEFAULT_MODEL})")
    ap.add_argument("--sets", nargs="+", default=["all"], metavar="SET", help=f"sets to run (default: all = {', '.join(SETS)})")
    ap.add_argument("--data", type=Path, help="data root (default: $ANYIR_DATA or ../shared/data)")
    ap.add_argument("--limit", type=positive_int, help="only the first N images of each set (quick checks)")
    ap.add_argument("--baseline", default="", help="comma-separated classical baselines: nlm (OpenCV), bm3d (PyPI bm3d)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic degradations (default 0)")
    ap.add_argument("--threads", type=positive_int, help="torch CPU threads")
    ap.add_argument("--json", type=Path, help="write all results (per image too) to this JSON file")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be >= 1")
    sets = resolve_sets(args.sets)
    import numpy as np
    import torch

    from ..models.checkpoint import load_model, weights_sha256

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    model.set_fft_mode(model.fast_fft_mode())

    @torch.no_grad()
    def restore(img: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
        return model(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)

    baselines = tuple(b for b in args.baseline.split(",") if b)
    results = evaluate(restore, sets, args.data or default_data_root(), seed=args.seed, limit=args.limit,
                       baselines=baselines, progress=not args.no_progress)
    results["model"] = {"name": model.name, "source": str(args.model), "fft_mode": model.fft_mode,
                        "weights_sha256": weights_sha256(model)}
    results["command"] = "anyir-eval " + " ".join(argv if argv is not None else sys.argv[1:])
    print(markdown_table(results))
    if args.json:
        write_json(results, args.json)
        print(f"wrote {args.json}")
    return 0
