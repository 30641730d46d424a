#!/usr/bin/env python3
"""Large images (issue #4): tiled vs whole-image output on 1024x1024 crops of real photos, and
peak memory of `anyir-restore` on a 3840x2160 photo.

    python benchmarks/large_images.py [--model anyir-tiny] [--threads 2] [--data ../shared/data]

Writes benchmarks/results/large_images.{json,md}.  Photos come from ../shared/data/photos
(read in place).  Each 1024 crop is degraded with seeded noise (and rain) and restored through
onnxruntime (the model exported to a temp folder with `anyir-export`), once whole and once
tiled, with the default overlap and with a larger one.  The 4K run is the real command line
(`anyir-restore` in a fresh process, default automatic tiling from its memory budget); its
peak RSS is the child's ru_maxrss.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from anyir_edge.degradations import degrade
from anyir_edge.eval import default_data_root
from anyir_edge.fsutil import atomic_write, write_json
from anyir_edge.metrics import psnr
from anyir_edge.runtime import DEFAULT_MEMORY_LIMIT, DEFAULT_OVERLAP, Restorer

ROOT = Path(__file__).resolve().parents[1]
CROP_PHOTOS = ("plasma_Path.jpg", "mate_Aqua.jpg", "mate_Garden.jpg", "mate_Storm.jpg")
UHD_PHOTO = "plasma_Path.jpg"
TILES = ((512, DEFAULT_OVERLAP), (512, 128), (256, 64))


def centre_crop(img: np.ndarray, h: int, w: int) -> np.ndarray:
    s = max(h / img.shape[0], w / img.shape[1])
    if s > 1:
        img = cv2.resize(img, (int(np.ceil(img.shape[1] * s)), int(np.ceil(img.shape[0] * s))),
                         interpolation=cv2.INTER_CUBIC)
    y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])


def tiling_rows(engine: Path, photos: Path, threads: int) -> list[dict]:
    rows = []
    with Restorer.open(str(engine), threads=threads, memory_limit=8 << 30) as r:  # whole 1024^2 runs need ~1.5 GB
        for name in CROP_PHOTOS:
            f = photos / name
            if not f.is_file():
                continue
            rgb = centre_crop(cv2.imread(str(f), cv2.IMREAD_COLOR), 1024, 1024)[..., ::-1]
            for kind in ("noise", "rain"):
                lq = degrade(rgb.astype(np.float32) / 255, kind, rng=0)
                whole = r.restore(lq, tile=0)
                for tile, ov in TILES:
                    tiled = r.restore(lq, tile=tile, overlap=ov)
                    db = psnr(tiled, whole, data_range=1.0)
                    rows.append({"photo": name, "degradation": kind, "tile": tile, "overlap": ov,
                                 "psnr_tiled_vs_whole": round(float(db), 2),
                                 "max_abs": float(np.abs(tiled - whole).max()), "passes_45db": bool(db >= 45)})
                    print(f"  {name} {kind} tile {tile}/{ov}: {rows[-1]['psnr_tiled_vs_whole']} dB", flush=True)
    return rows


def uhd_row(engine: Path, photos: Path, threads: int, work: Path) -> dict:
    src = photos / UHD_PHOTO
    img = centre_crop(cv2.imread(str(src), cv2.IMREAD_COLOR), 2160, 3840)
    noisy = (degrade(img[..., ::-1].astype(np.float32) / 255, "noise", rng=1)[..., ::-1] * 255).round().astype(np.uint8)
    inp = work / "uhd_3840x2160.png"
    cv2.imwrite(str(inp), noisy)
    out = work / "uhd_restored.png"
    exe = Path(sys.executable).with_name("anyir-restore")
    cmd = [str(exe), str(inp), "-o", str(out), "--model", str(engine), "--threads", str(threads), "--quiet"]
    t0 = time.perf_counter()
    with open(work / "restore.err", "w") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own peak RSS (RUSAGE_CHILDREN would mix in others)
        p.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    if p.returncode != 0:
        raise SystemExit(f"anyir-restore failed: {(work / 'restore.err').read_text().strip()}")
    ok = cv2.imread(str(out)) is not None and cv2.imread(str(out)).shape == (2160, 3840, 3)
    return {"photo": UHD_PHOTO, "size": "3840x2160", "command": "anyir-restore IN.png -o OUT.png --model ENGINE.onnx "
            f"--threads {threads} (default automatic tiling, memory limit {DEFAULT_MEMORY_LIMIT >> 20} MB)",
            "peak_rss_mb": round(peak_mb, 1), "seconds": round(secs, 1), "output_ok": ok,
            "target_mb": 2048, "passes": bool(ok and peak_mb < 2048)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="anyir-tiny", help="shipped name or checkpoint (default anyir-tiny)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=None, help="data root (default ../shared/data or $ANYIR_DATA)")
    ap.add_argument("--parts", default="tiling,uhd", help="comma-separated: tiling, uhd (default both)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "large_images"))
    a = ap.parse_args(argv)
    photos = Path(a.data or default_data_root()) / "photos"
    if not photos.is_dir():
        print(f"large_images: no photos folder at {photos} (set --data or ANYIR_DATA)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="anyir-large-") as d:
        work = Path(d)
        subprocess.run([str(Path(sys.executable).with_name("anyir-export")), "--to", "onnx", "--model", a.model,
                        "--output", str(work) + "/"], check=True, capture_output=True)
        engine = next(work.glob("*.onnx"))
        parts = set(a.parts.split(","))
        rows, uhd = [], None
        if "tiling" in parts:
            print("tiled vs whole on 1024x1024 crops ...", flush=True)
            rows = tiling_rows(engine, photos, a.threads)
        if "uhd" in parts:
            print("3840x2160 through anyir-restore ...", flush=True)
            uhd = uhd_row(engine, photos, a.threads, work)
    res = {"model": a.model, "engine": "onnxruntime fp32 (anyir-export --to onnx)", "threads": a.threads,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "tiling": rows, "uhd": uhd}
    write_json(Path(a.out + ".json"), res)
    md = [f"# Large images ({res['date'][:10]}, {a.model}, onnxruntime, {a.threads} threads)", "",
          "Reproduce: `python benchmarks/large_images.py --model " + a.model + f" --threads {a.threads}`", "",
          "## Tiled vs whole-image output, 1024x1024 crops of real photos (target >= 45 dB)", "",
          "| photo | degradation | tile | overlap | PSNR tiled vs whole (dB) | max abs | >= 45 dB |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['photo']} | {r['degradation']} | {r['tile']} | {r['overlap']} | {r['psnr_tiled_vs_whole']} | "
           f"{r['max_abs']:.2e} | {'yes' if r['passes_45db'] else 'no'} |" for r in rows]
    if uhd:
        md += ["", "## 3840x2160 photo through `anyir-restore` (target < 2048 MB peak RSS)", "",
               f"- command: `{uhd['command']}`",
               f"- peak RSS {uhd['peak_rss_mb']} MB, {uhd['seconds']} s, output written and readable: {uhd['output_ok']}", ""]
    atomic_write(Path(a.out + ".md"), "\n".join(md))
    print(f"wrote {a.out}.json and {a.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
