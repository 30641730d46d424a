#!/usr/bin/env bash
# Re-record every result in benchmarks/results/ for the shipped model, one after the other
# (never in parallel, never while training runs: the timings are ratios measured in one run,
# but two heavy jobs on 2 cores still distort them).
#
#   bash benchmarks/record.sh            # all steps (~35 min on 2 cores)
#   bash benchmarks/record.sh eval bench # some of: eval bench bench-full costs archs soak pad bench-precision cpp large precision
#
# Needs the project's .venv (make install) and the shared data (../shared/data or $ANYIR_DATA).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${BIN:-.venv/bin}"
R=benchmarks/results
THREADS="${THREADS:-2}"
MODEL="${MODEL:-anyir-tiny}"  # the shipped model the results describe (anyir_edge.DEFAULT_MODEL)
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(eval bench bench-full costs archs soak pad bench-precision cpp large precision)
say() { echo "== record.sh: $* ($(date -u +%H:%M:%S))" >&2; }

for step in "${steps[@]}"; do
  case "$step" in
    eval)
      say "anyir-eval, all sets, full"
      "$BIN/anyir-eval" --model "$MODEL" --sets all --baseline nlm --threads "$THREADS" --no-progress \
        --json "$R/eval-$MODEL.json" ;;
    bench)
      say "anyir-bench $MODEL 224 512"
      "$BIN/anyir-bench" --model "$MODEL" --sizes 224 512 --threads "$THREADS" --runs 5 --warmup 2 --no-progress \
        --json "$R/bench-$MODEL.json" --markdown "$R/bench-$MODEL.md" --plot "$R/bench-$MODEL.png" ;;
    bench-full)
      say "anyir-bench anyir-paper (random weights: no trained full model yet) torch vs onnxruntime"
      "$BIN/anyir-bench" --models anyir-paper --random-weights --sizes 224 512 --backends torch,onnxruntime \
        --threads "$THREADS" --runs 5 --warmup 1 --no-progress \
        --json "$R/bench-anyir-paper-random.json" --markdown "$R/bench-anyir-paper-random.md" ;;
    costs)
      say "anyir-bench: every registered configuration (random weights), torch / onnxruntime / openvino, 224 and 512"
      "$BIN/anyir-bench" --models anyir,anyir-l,anyir-tiny,anyir-paper,anyir-paper-tiny --random-weights \
        --sizes 224 512 --backends torch,onnxruntime,openvino --threads "$THREADS" --runs 3 --warmup 1 --no-progress \
        --json "$R/costs.json" --markdown "$R/costs.md" ;;
    archs)
      say "anyir-bench: the three architectures (random weights), every CPU engine, 224 and 512; the papers' claims beside"
      "$BIN/anyir-bench" --models anyir,promptir,moce-ir-s --random-weights \
        --sizes 224 512 --backends torch,onnxruntime,openvino --threads "$THREADS" --runs 3 --warmup 1 --no-progress \
        --json "$R/architectures.json" --markdown "$R/architectures.md"
      "$BIN/python" benchmarks/compare_architectures.py "$R/architectures.json" --markdown "$R/architectures-vs-paper.md" ;;
    soak)
      say "soak: 1000 restores, 4 threads on one Restorer"
      "$BIN/python" benchmarks/soak.py --model "$MODEL" --restores 1000 --threads 4 ;;
    pad)
      say "padding in the graph vs by the runtime, 1 thread"
      "$BIN/python" benchmarks/pad_in_graph.py --model "$MODEL" --threads 1 --runs 9 ;;
    bench-precision)
      say "anyir-bench $MODEL fp32/fp16/int8, onnxruntime and openvino, 224 and 512, 1 thread"
      "$BIN/anyir-bench" --model "$MODEL" --sizes 224 512 --backends onnxruntime,openvino --precisions fp32,fp16,int8 \
        --threads 1 --runs 7 --warmup 2 --no-progress \
        --json "$R/bench-precision-$MODEL.json" --markdown "$R/bench-precision-$MODEL.md" ;;
    cpp)
      say "C++ vs Python runtime"
      "$BIN/python" benchmarks/cpp_vs_python.py --threads 1 --profile --machine-note "${MACHINE_NOTE:-no other job running}" ;;
    large)
      say "large images: tiling vs whole, 3840x2160 RSS"
      "$BIN/python" benchmarks/large_images.py --threads "$THREADS" ;;
    precision)
      say "reduced precision on the shipped weights, with the quality gate on CBSD68 sigma 25 and Rain100L"
      tmp="$(mktemp -d)"
      for to in onnx openvino; do
        for p in fp16 int8; do
          "$BIN/anyir-export" --to "$to" --model "$MODEL" --"$p" --data "${ANYIR_DATA:-../shared/data}" \
            --threads "$THREADS" --output "$tmp/$to/" 2>&1 | tail -3 || true
        done
      done
      "$BIN/python" - "$tmp" "$R/precision-$MODEL.json" <<'PY'
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
    *) echo "record.sh: unknown step '$step' (eval bench bench-full costs archs soak pad bench-precision cpp large precision)" >&2; exit 2 ;;
  esac
done
say "done"
