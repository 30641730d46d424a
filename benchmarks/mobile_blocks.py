"""Where ExecuTorch (XNNPACK) loses to ONNX Runtime: one stage of the network at a time.

Issue #22 asks for ExecuTorch FP32 <= 0.85x our ONNX Runtime engine; the whole-network ratio
alone does not say which part is slow. This script cuts the network at its stages (the input
embedding, each encoder / decoder level, down / up sampling, the channel reductions,
refinement, output), records each stage's input at the given size from one forward of the
whole model, and runs that stage as its own engine twice: the *mobile* deploy form lowered to
ExecuTorch + XNNPACK (what ``--to executorch`` ships) and the *cpu* deploy form exported to
ONNX and run in ONNX Runtime (what ``--to onnx`` ships), both with the frequency path in its
``fold`` form. Timings are medians of interleaved runs after warm-up, at the given thread
count (after one warm-up run, which also gives the largest difference between the two forms);
the table gives each stage's ET / ORT ratio and both totals.

    python benchmarks/mobile_blocks.py --model anyir-tiny --size 224 --threads 1 \\
        --json benchmarks/results/mobile-blocks-anyir-tiny-224-1t.json

Needs the ``[executorch]`` extra. Do not run it beside training or other benchmarks.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile

import torch

from _variants import compare_row, ort_runner, started
from anyir_edge import DEFAULT_MODEL

STAGES = ("patch_embed", "encoder_level1", "down1_2", "encoder_level2", "down2_3", "encoder_level3", "down3_4",
          "latent", "reduce_dim_level3", "up4_3", "reduce_chan_level3", "decoder_level3", "up3_2",
          "reduce_chan_level2", "decoder_level2", "up2_1", "decoder_level1", "refinement", "output")


def stage_inputs(net: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """{stage name: its input tensor} from one forward of ``net`` on ``x``."""
    seen, hooks = {}, []
    for name in STAGES:
        mod = getattr(net, name, None)
        if isinstance(mod, torch.nn.Module):
            hooks.append(mod.register_forward_pre_hook(
                lambda m, args, name=name: seen.setdefault(name, args[0].detach().clone())))
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return seen


def ort_session(module: torch.nn.Module, x: torch.Tensor, threads: int):
    import onnxruntime as ort

    f = io.BytesIO()
    torch.onnx.export(module, (x,), f, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                      do_constant_folding=True)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    run = ort_runner(ort.InferenceSession(f.getvalue(), sess_options=so, providers=["CPUExecutionProvider"]))
    feed = x.numpy()
    return lambda: run(feed)


def et_method(module: torch.nn.Module, x: torch.Tensor, threads: int, tmp: str):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from anyir_edge.runtime.backends.executorch_backend import _set_threads as set_threads

    ep = torch.export.export(module, (x,))
    buf = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    path = os.path.join(tmp, "stage.pte")
    with open(path, "wb") as fh:
        fh.write(buf)
    set_threads(threads)
    method = Runtime.get().load_program(path).load_method("forward")
    return lambda: method.execute([x])[0].numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"shipped name, checkpoint, or an architecture name with random weights (default {DEFAULT_MODEL})")
    ap.add_argument("--size", type=int, default=224, help="square input side, a multiple of the model's size multiple (default 224)")
    ap.add_argument("--threads", type=int, default=1, help="threads of both engines (default 1)")
    ap.add_argument("--repeats", type=int, default=15, help="timed runs per engine and stage, interleaved (default 15)")
    ap.add_argument("--json", default=None, help="write the table here")
    args = ap.parse_args(argv)

    from anyir_edge.bench import random_model
    from anyir_edge.errors import CheckpointError
    from anyir_edge.export.mobile_export import quiet
    from anyir_edge.models import get_architecture
    from anyir_edge.models.checkpoint import load_model
    from anyir_edge.runtime.backends import cpu_info

    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model)
    except CheckpointError:  # e.g. anyir-tiny before its weights ship: timing does not need trained weights
        model = random_model(args.model)
        print(f"{args.model}: no shipped weights, timing random weights", file=sys.stderr)
    model = model.float().eval()
    arch = get_architecture(model)
    cpu, mob = (arch.deploy_copy(model, form) for form in ("cpu", "mobile"))
    for net in (cpu, mob):
        net.set_fft_mode("fold")
    x = torch.rand(1, model.in_channels, args.size, args.size)
    inputs = stage_inputs(cpu, x)
    inputs_mob = stage_inputs(mob, x)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in STAGES:
            if name not in inputs or name not in inputs_mob:
                continue
            a, b = getattr(cpu, name).eval(), getattr(mob, name).eval()
            xo, xe = inputs[name], inputs_mob[name]
            try:
                with quiet():
                    fns = {"ort": ort_session(a, xo, args.threads), "et": et_method(b, xe, args.threads, tmp)}
            except Exception as e:  # a stage that does not export alone is reported, not fatal
                print(f"{name}: skipped ({str(e).splitlines()[0][:120]})", file=sys.stderr)
                continue
            # the mobile form is an exact rewrite of the cpu form (same padded channels): max_abs_vs_ort shows it
            row = compare_row(fns, args.repeats, "ort", stage=name, input=list(xo.shape))
            rows.append(row)
            print(f"{name:20s} {str(tuple(xo.shape)):22s} ORT {row['ms']['ort']:8.1f} ms  ET {row['ms']['et']:8.1f} ms  "
                  f"ratio {row['ratio_to_ort']['et']:.2f}  (max |diff| {row['max_abs_vs_ort']['et']:.1e})", flush=True)
    tot_o, tot_e = (sum(r["ms"][k] for r in rows) for k in ("ort", "et"))
    print(f"{'total':20s} {'':22s} ORT {tot_o:8.2f} ms  ET {tot_e:8.2f} ms  ratio {tot_e / max(tot_o, 1e-9):.2f}")
    if args.json:
        out = {"command": " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
               "model": args.model, "size": args.size, "threads": args.threads, "repeats": args.repeats,
               "cpu": cpu_info()["model"], "when": started(), "stages": rows,
               "total": {"ort_ms": tot_o, "et_ms": tot_e}}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
