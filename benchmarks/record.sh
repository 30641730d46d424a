#!/usr/bin/env bash
# Re-record every result in benchmarks/results/ for the shipped model, one after the other
# (never in parallel, never while training runs: the timings are ratios measured in one run,
# but two heavy jobs on 2 cores still distort them).
#
#   bash benchmarks/record.sh            # all steps (~35 min on 2 cores)
#   bash benchmarks/record.sh eval bench # some of: eval bench bench-full bench-precision cpp large precision
#
# Needs the project's .venv (make install) and the shared data (../shared/data or $ANYIR_DATA).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${BIN:-.venv/bin}"
R=benchmarks/results
THREADS="${THREADS:-2}"
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(eval bench bench-full bench-precision cpp large precision)
say() { echo "== record.sh: $* ($(date -u +%H:%M:%S))" >&2; }

for step in "${steps[@]}"; do
  case "$step" in
    eval)
      say "anyir-eval, all sets, full"
      "$BIN/anyir-eval" --model anyir-tiny --sets all --baseline nlm --threads "$THREADS" --no-progress \
        --json "$R/eval-anyir-tiny.json" ;;
    bench)
      say "anyir-bench anyir-tiny 224 512"
      "$BIN/anyir-bench" --model anyir-tiny --sizes 224 512 --threads "$THREADS" --runs 5 --warmup 2 --no-progress \
        --json "$R/bench-anyir-tiny.json" --markdown "$R/bench-anyir-tiny.md" --plot "$R/bench-anyir-tiny.png" ;;
    bench-full)
      say "anyir-bench full anyir config (random weights) torch vs onnxruntime"
      tmp="$(mktemp -d)"
      "$BIN/python" - "$tmp/anyir-random.safetensors" <<'PY'
import sys, torch
import anyir_edge
from anyir_edge.models import create
torch.manual_seed(0)
m = create("anyir")
with torch.no_grad():
    for p in m.parameters():
        p.add_(torch.randn_like(p) * 0.02)
anyir_edge.save_model(m.eval(), sys.argv[1])
PY
      "$BIN/anyir-bench" --model "$tmp/anyir-random.safetensors" --sizes 224 512 --backends torch,onnxruntime \
        --threads "$THREADS" --runs 5 --warmup 1 --no-progress \
        --json "$R/bench-anyir-random.json" --markdown "$R/bench-anyir-random.md"
      rm -rf "$tmp" ;;
    bench-precision)
      say "anyir-bench anyir-tiny fp32/fp16/int8, onnxruntime and openvino, 224 and 512, 1 thread"
      "$BIN/anyir-bench" --model anyir-tiny --sizes 224 512 --backends onnxruntime,openvino --precisions fp32,fp16,int8 \
        --threads 1 --runs 7 --warmup 2 --no-progress \
        --json "$R/bench-precision-anyir-tiny.json" --markdown "$R/bench-precision-anyir-tiny.md" ;;
    cpp)
      say "C++ vs Python runtime"
      "$BIN/python" runtimes/cpp/bench.py --threads 1 --profile --machine-note "${MACHINE_NOTE:-no other job running}" ;;
    large)
      say "large images: tiling vs whole, 3840x2160 RSS"
      "$BIN/python" benchmarks/large_images.py --threads "$THREADS" ;;
    precision)
      say "reduced precision on the shipped weights, with the quality gate on CBSD68 sigma 25 and Rain100L"
      tmp="$(mktemp -d)"
      for to in onnx openvino; do
        for p in fp16 int8; do
          "$BIN/anyir-export" --to "$to" --model anyir-tiny --"$p" --data "${ANYIR_DATA:-../shared/data}" \
            --threads "$THREADS" --output "$tmp/$to/" 2>&1 | tail -3 || true
        done
      done
      "$BIN/python" - "$tmp" "$R/precision-anyir-tiny.json" <<'PY'
import json, sys
from pathlib import Path
from anyir_edge.fsutil import write_json
out = {}
for c in sorted(Path(sys.argv[1]).glob("*/*.parity.json")):
    d = json.loads(c.read_text())
    out[f"{c.parent.name}/{c.name}"] = {"passed": d.get("passed"), "rejected": d.get("rejected", False), "summary": d.get("summary"),
                   "quality": d.get("quality"), "precision": d.get("precision"),
                   "host_cpu": d.get("host_cpu"), "versions": d.get("versions"), "created": d.get("created"),
                   "reduced_precision": {k: v for k, v in (d.get("reduced_precision") or {}).items()
                                         if k not in ("quantized_nodes",)}}
write_json(Path(sys.argv[2]), out)
print(f"wrote {sys.argv[2]}")
PY
      rm -rf "$tmp" ;;
    *) echo "record.sh: unknown step '$step' (eval bench bench-full bench-precision cpp large precision)" >&2; exit 2 ;;
  esac
done
say "done"
