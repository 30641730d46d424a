"""The quality gate: PSNR against ground truth may drop at most so much below the PyTorch FP32 model."""
from __future__ import annotations

from pathlib import Path


from ..formats import ExportError

QUALITY_DROP_DB = {"fp16": 0.3, "int8": 1.0}   # max PSNR-vs-ground-truth drop against the PyTorch FP32 model
QUALITY_SETS = ("cbsd68-25", "rain100l")


def quality_gate(engine_path, model, precision: str, data_root, sets=QUALITY_SETS, limit: int | None = None,
                 threads: int | None = None, max_drop_db: float | None = None) -> dict:
    """PSNR against ground truth of the engine and of the PyTorch FP32 model on ``sets``
    (:mod:`anyir_edge.eval` protocol); passes when no set drops more than ``max_drop_db``
    (default :data:`QUALITY_DROP_DB` of ``precision``).  ``sets`` may name folders with lq/ and gt/."""
    from ...errors import AnyIRError
    from ...eval import evaluate, resolve_sets
    from ...runtime import Restorer
    from ...runtime import backends

    limit_db = QUALITY_DROP_DB.get(precision, 0.0) if max_drop_db is None else float(max_drop_db)
    try:
        chosen = resolve_sets(list(sets))
    except AnyIRError as e:
        raise ExportError(str(e)) from None
    ref = Restorer(backends.get("torch")(model, device="cpu", threads=threads, fft_mode=None), tile=0)
    rows = {}
    with Restorer.open(str(engine_path), device="cpu", threads=threads, tile=0) as eng:
        for s in chosen:
            try:
                r_ref = evaluate(ref.restore, [s], Path(data_root), limit=limit, progress=False)["sets"][s.name]
                r_eng = evaluate(eng.restore, [s], Path(data_root), limit=limit, progress=False)["sets"][s.name]
            except AnyIRError as e:
                raise ExportError(f"quality gate: {e}") from None
            drop = r_ref["model"]["psnr"] - r_eng["model"]["psnr"]
            rows[s.name] = {"n": r_eng["n"], "psnr_fp32": round(r_ref["model"]["psnr"], 4),
                            "psnr_engine": round(r_eng["model"]["psnr"], 4), "drop_db": round(drop, 4),
                            "passed": bool(drop <= limit_db)}
    return {"passed": all(r["passed"] for r in rows.values()), "max_drop_db": limit_db, "sets": rows,
            "data": str(data_root), "limit": limit,
            "gate": f"PSNR vs ground truth at most {limit_db:g} dB below the PyTorch FP32 model on every set"}
