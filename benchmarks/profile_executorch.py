#!/usr/bin/env python3
"""Where an ExecuTorch program's time goes: XNNPACK's own per-operator timings.

``benchmarks/profile_ops.py`` does this for ONNX Runtime and OpenVINO; for a ``.pte`` the
executorch wheel's runtime records an ETDump (``enable_etdump``) in which the XNNPACK delegate
times every operator it runs.  This script runs each static method of a program built with
``anyir-export --to executorch --sizes ...`` (one per size) after warm-up, reads the ETDump with
ExecuTorch's ``Inspector`` and sums the median time of each operator by class (the classes of
``profile_ops.py`` where XNNPACK's names map onto them), with the program's largest single
operators; written as JSON and Markdown.

    anyir-export --to executorch --model anyir-tiny --sizes 224,512 --output out/
    python benchmarks/profile_executorch.py out/anyir-tiny.pte --threads 1 2 --runs 5 \\
        --out benchmarks/results/profile-executorch-anyir-tiny

XNNPACK names operators by kernel, not by the model's layer, so a class total is what the
kernel costs here (``DWConv`` holds 3x3 and the split 7x7 pieces alike); the ``#n`` in a name is
its order in the delegate.  Needs the ``[executorch]`` extra; do not run it beside other heavy
work.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from _variants import started

#: XNNPACK operator name (without "#n") -> the operator classes of profile_ops.py
CLASSES = (
    ("conv 1x1", ("Fully Connected",)),
    ("conv depthwise", ("DWConv",)),
    ("conv kxk", ("IGEMM", "Deconvolution", "Convolution")),
    ("matmul/attention", ("Batch Matrix Multiply",)),
    ("reduce/softmax", ("Mean", "Softmax")),
    ("copy/concat", ("Copy",)),
    ("layout/reshape", ("Transpose", "Reshape")),
    ("element-wise", ("",)),   # the rest: Add, Multiply, Subtract, Square, GELU, Sigmoid, Clamp, ...
)


def op_class(name: str) -> str:
    return next(cls for cls, keys in CLASSES if any(k in name for k in keys))


def profile_method(pte: str, method: str, size: tuple[int, int], threads: int, runs: int, tmp: str) -> dict:
    """One method's ETDump after one warm-up and ``runs`` timed executions: per-operator medians."""
    import torch
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    from anyir_edge.export.mobile_export import quiet
    from anyir_edge.runtime.backends.executorch_backend import _set_threads

    _set_threads(threads)
    program = Runtime.get().load_program(pte, enable_etdump=True)
    m = program.load_method(method)
    x = torch.rand(1, 3, *size)
    for _ in range(runs + 1):
        m.execute([x])
    dump = str(Path(tmp) / f"{method}-{threads}.etdump")
    program.write_etdump_result_to_file(dump, dump + ".debug")
    with quiet():
        df = Inspector(etdump_path=dump).to_dataframe()
    call = float(df[df.event_name == "DELEGATE_CALL"]["p50 (ms)"].sum())
    whole = float(df[df.event_name == "Method::execute"]["p50 (ms)"].max())
    ops = df[df.is_delegated_op == True]  # noqa: E712 (a pandas mask)
    rows = [(re.sub(r" #\d+$", "", n), n, float(t)) for n, t in zip(ops.event_name, ops["p50 (ms)"])]
    classes: dict[str, dict] = {}
    for kind, _, t in rows:
        c = classes.setdefault(op_class(kind), {"ms": 0.0, "ops": 0, "kernels": {}})
        c["ms"] += t
        c["ops"] += 1
        c["kernels"][kind] = c["kernels"].get(kind, 0.0) + t
    top = sorted(rows, key=lambda r: -r[2])[:12]
    return {"method": method, "size": list(size), "threads": threads, "execute_ms": whole, "delegate_ms": call,
            "ops_ms": sum(t for *_, t in rows), "classes": classes,
            "largest": [{"op": n, "ms": t} for _, n, t in top]}


def markdown(meta: dict, records: list[dict]) -> str:
    md = [f"# ExecuTorch (XNNPACK) time per operator class ({meta['cpu']}, {meta['when']})", "",
          f"Command: `{meta['command']}`; program `{meta['program']}`; medians of {meta['runs']} runs after one "
          "warm-up, from the ETDump of ExecuTorch's runtime (XNNPACK times each operator it runs).", ""]
    for r in records:
        h, w = r["size"]
        md += [f"#### {h}x{w}, {r['threads']} thread(s): {r['execute_ms']:.1f} ms per image "
               f"(delegate {r['delegate_ms']:.1f} ms, its operators {r['ops_ms']:.1f} ms)", "",
               "| class | ms | % of operators | ops | XNNPACK kernels (ms) |", "|---|---|---|---|---|"]
        for cls, _ in CLASSES:
            c = r["classes"].get(cls)
            if not c:
                continue
            kernels = ", ".join(f"{k} {v:.1f}" for k, v in sorted(c["kernels"].items(), key=lambda kv: -kv[1]))
            md.append(f"| {cls} | {c['ms']:.1f} | {100 * c['ms'] / max(r['ops_ms'], 1e-9):.1f} | {c['ops']} | {kernels} |")
        md += ["", "Largest single operators: " + ", ".join(f"{o['op']} {o['ms']:.2f} ms" for o in r["largest"]), ""]
    return "\n".join(md)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("program", type=Path, help="a .pte built with anyir-export --to executorch --sizes ...")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per method, after one warm-up (default 5)")
    ap.add_argument("--out", default=None, help="output stem (.md and .json); default: print the Markdown only")
    a = ap.parse_args(argv)
    if not a.program.is_file():
        ap.error(f"no such program: {a.program}")
    try:
        from executorch.runtime import Runtime
    except ImportError:
        ap.error("needs the [executorch] extra: pip install -e '.[executorch]'")
    from anyir_edge.runtime.backends import cpu_info

    try:
        names = sorted(Runtime.get().load_program(str(a.program)).method_names)
    except Exception as e:  # not a program ExecuTorch can read
        ap.error(f"{a.program}: not an ExecuTorch program ({str(e).splitlines()[0][:120]})")
    sized = [(n, tuple(int(v) for v in m.groups())) for n in names if (m := re.fullmatch(r"restore_(\d+)x(\d+)", n))]
    if not sized:
        ap.error(f"{a.program}: no static method (restore_HxW); export it with --sizes")
    meta = {"cpu": cpu_info()["model"], "when": started(), "runs": a.runs, "program": str(a.program),
            "command": " ".join(["python benchmarks/profile_executorch.py", *(sys.argv[1:] if argv is None else argv)])}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in a.threads:
            for method, size in sorted(sized, key=lambda s: s[1]):
                r = profile_method(str(a.program), method, size, threads, a.runs, tmp)
                records.append(r)
                print(f"{size[0]}x{size[1]} {threads} thread(s): {r['execute_ms']:.1f} ms; "
                      + ", ".join(f"{c} {v['ms']:.1f}" for c, v in sorted(r["classes"].items(), key=lambda kv: -kv[1]["ms"])),
                      flush=True)
    text = markdown(meta, records)
    if a.out:
        Path(a.out + ".json").write_text(json.dumps({"environment": meta, "records": records}, indent=1))
        Path(a.out + ".md").write_text(text + "\n")
        print("wrote", a.out + ".md")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
