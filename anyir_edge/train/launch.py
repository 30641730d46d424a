"""``anyir-train --processes N``: N training processes on this machine, one DDP rank each.

The ranks are started the way ``torchrun`` starts them (the environment contract of
``torch.distributed``: ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``), each running ``anyir-train`` with the same arguments; the trainer sees
``WORLD_SIZE`` and joins the group (gloo on CPU, NCCL on CUDA).  Launched here instead of through
``torchrun`` so that a failure is the rank's own one-line error, not the launcher's traceback.

Why on a CPU: at this project's crop and batch sizes one process is bound by one core (2 intra-op
threads ran 2.1 s/it, 1 thread 2.3 s/it), while two ranks of one thread each ran 1.19 s/it on
2 cores (benchmarks/training/README.md, "Two processes").
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int, threads: int | None) -> int:
    """Run ``python -m anyir_edge.cli.train *args`` as ``processes`` ranks and wait for all.

    ``threads``: intra-op threads per rank (added as ``--set threads=...``; None keeps the
    config's).  Rank 0 prints as usual; another rank's output is shown only if it fails where
    rank 0 did not.  Ctrl-C / SIGTERM go to every rank, which end the current iteration, save and
    exit together.  Returns the first rank's error code (> 0), else the first other non-zero code
    (a rank ended by a signal), else 0.
    """
    cmd = [sys.executable, "-m", "anyir_edge.cli.train", *args]
    if threads is not None:
        cmd += ["--set", f"threads={threads}"]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(processes))
    procs: list[subprocess.Popen] = []
    logs: list[Path | None] = []
    with tempfile.TemporaryDirectory(prefix="anyir-train-ranks-") as tmp:
        def forward(signum, frame):
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for rank in range(processes):
                renv = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
                if rank == 0:
                    procs.append(subprocess.Popen(cmd, env=renv))
                    logs.append(None)
                else:
                    log = Path(tmp) / f"rank{rank}.log"
                    with log.open("w") as f:
                        procs.append(subprocess.Popen(cmd, env=renv, stdout=f, stderr=subprocess.STDOUT))
                    logs.append(log)
            codes = _wait(procs)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for rank, (code, log) in enumerate(zip(codes, logs)):
            if code and log is not None and codes[0] <= 0:  # rank 0 said nothing of its own
                lines = log.read_text(errors="replace").strip().splitlines()
                for line in lines[-5:]:
                    print(f"rank {rank}: {line}", file=sys.stderr)
    return next((c for c in codes if c > 0), next((c for c in codes if c), 0))


def _wait(procs: list[subprocess.Popen]) -> list[int]:
    """Wait for every rank.  Once one fails the others usually fail on their own (the same bad
    input) or lose their peer; after 10 s they get SIGTERM (save and exit), after 70 s SIGKILL
    (a rank blocked in an all-reduce with a dead peer may never return)."""
    failed_at = None
    termed = False
    while any(p.poll() is None for p in procs):
        now = time.monotonic()
        if failed_at is None and any(p.poll() for p in procs):
            failed_at = now
        if failed_at is not None and not termed and now > failed_at + 10:
            termed = True
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
        if failed_at is not None and now > failed_at + 70:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    return [p.returncode for p in procs]
