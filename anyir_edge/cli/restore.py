"""``anyir-restore INPUT... -o OUTPUT``: restore image files with a model or an engine.

Inputs are files, folders (their image files, not recursive) and globs (quoted globs are
expanded here, ``**`` included).  Each output is written atomically (temporary file +
rename) as OUTPUT/<input name> in the input's format (``--ext`` changes it); a single input
with an output path that has an image suffix is written to exactly that file.  An output
that would replace an input is refused.

A batch goes on past a bad file: each input is restored or gets one line on stderr (and no
output file), whatever went wrong (undecodable, too large, a write error such as a full disk);
the summary says how many failed.  Exit codes: 0 all restored, 1 some or all inputs failed or
the model could not be opened, 2 bad arguments.  An output folder that cannot be created or
written is found before the model is loaded.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

from .. import DEFAULT_MODEL
from ..errors import AnyIRError
from . import ArgumentParser, non_negative_int, positive_float, positive_int


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="anyir-restore", description="Restore images (denoise, derain, dehaze, ...) "
                                "with an AnyIR model or exported engine.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="output folder (or file, for one input)")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                   help="shipped model name, checkpoint (.safetensors/.pth/.ckpt) or engine: .onnx, .xml, .engine, "
                        f".pte, .tflite, .mlpackage (macOS) (default: the shipped {DEFAULT_MODEL})")
    from ..runtime import backends

    p.add_argument("--backend", default=None, choices=backends.choices(),
                   help=f"engine: {', '.join(backends.names())} (default: from the model's suffix)")
    p.add_argument("--device", default=None, help="torch: cpu/cuda; onnxruntime: auto/cpu/cuda/tensorrt; openvino: CPU/GPU")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: physical cores)")
    p.add_argument("--tile", type=non_negative_int, default=None, metavar="N",
                   help="tile size in pixels (default: automatic from --memory-limit; 0 = never tile)")
    p.add_argument("--overlap", type=non_negative_int, default=None, metavar="N",
                   help="tile overlap in pixels (default 32)")
    p.add_argument("--memory-limit", type=positive_float, default=None, metavar="MB",
                   help="activation memory budget that decides tiling (default 1024, or $ANYIR_MEMORY_LIMIT_MB)")
    p.add_argument("--ext", default=None, help="output format by extension (png, jpg, tif, ...); default: keep the input's")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def expand_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """(image files, error lines) from files, folders and globs, in order, without duplicates."""
    from ..runtime.io import IMAGE_SUFFIXES

    files, errors, seen = [], [], set()

    def add(p: Path):
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            files.append(p)

    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                errors.append(f"{item}: folder holds no image files")
            for q in found:
                add(q)
        elif p.exists():
            add(p)
        elif glob.has_magic(item):
            found = sorted(Path(q) for q in glob.glob(item, recursive=True) if Path(q).is_file())
            if not found:
                errors.append(f"{item}: no file matches")
            for q in found:
                add(q)
        else:
            errors.append(f"{item}: no such file or directory")
    return files, errors


def plan_outputs(files: list[Path], output: str, ext: str | None) -> tuple[list[tuple[Path, Path | None, str | None]], Path]:
    """[(input, output path or None, error or None)]."""
    from ..runtime.io import IMAGE_SUFFIXES

    out = Path(output)
    ext = None if ext is None else "." + ext.lower().lstrip(".")
    if ext is not None and ext not in IMAGE_SUFFIXES:
        raise AnyIRError(f"--ext {ext[1:]}: unsupported output format (known: {', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
    single_file = len(files) == 1 and out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir()
    if out.exists() and not out.is_dir() and not single_file:
        raise AnyIRError(f"-o {output}: exists and is not a folder")
    inputs = {os.path.realpath(f) for f in files}
    taken: dict[str, Path] = {}
    plan = []
    for f in files:
        target = out if single_file else out / (f.stem + (ext or f.suffix))
        key = os.path.realpath(target)
        if key in inputs:
            plan.append((f, None, f"{f}: output {target} would overwrite an input; choose another -o folder"))
        elif key in taken:
            plan.append((f, None, f"{f}: output {target} is also the output of {taken[key]}"))
        else:
            taken[key] = f
            plan.append((f, target, None))
    return plan, out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..runtime import Restorer
    from ..runtime.io import read_image, read_metadata, write_image

    prog = "anyir-restore"
    files, errors = expand_inputs(args.inputs)
    plan, _ = plan_outputs(files, args.output, args.ext)
    for line in errors:
        print(f"{prog}: error: {line}", file=sys.stderr)
    failed = len(errors)
    todo = [(f, t) for f, t, err in plan if err is None]
    for f, t, err in plan:
        if err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            failed += 1
    if not todo:
        if not failed:
            raise AnyIRError("no input images")
        print(f"{prog}: {failed} input(s) failed, nothing restored", file=sys.stderr)
        return 1
    check_writable({t.parent for _, t in todo})  # before the model is loaded
    kw = {}
    if args.tile is not None:
        kw["tile"] = args.tile
    if args.overlap is not None:
        kw["overlap"] = args.overlap
    if args.memory_limit is not None:
        kw["memory_limit"] = int(args.memory_limit * 2**20)
    restorer = Restorer.open(args.model, backend=args.backend, device=args.device, threads=args.threads, **kw)
    from tqdm import tqdm

    done = 0
    bar = tqdm(todo, desc=prog, unit="img", disable=True if args.quiet else None, file=sys.stderr, leave=False)
    for src, dst in bar:
        try:
            img = read_image(src)
            if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha (rare decoders)
                raise AnyIRError(f"{src}: 2-channel images are not supported")
            out = restorer.restore(img, bgr=img.ndim == 3 and img.shape[2] in (3, 4))
            write_image(dst, out, metadata=read_metadata(src))
            done += 1
        except Exception as e:  # one line per file, whatever failed; the batch goes on
            tqdm.write(f"{prog}: error: {file_error(src, e)}", file=sys.stderr)
            failed += 1
    bar.close()
    total = done + failed
    print(f"restored {done} of {total} image(s) into {args.output} with {restorer.describe()}")
    if failed:
        print(f"{prog}: {failed} of {total} input(s) failed", file=sys.stderr)
        return 1
    return 0


def file_error(src: Path, e: BaseException) -> str:
    """One line for a file that failed: our own errors as they are, the rest with their cause."""
    from ..errors import first_line

    if isinstance(e, MemoryError):
        msg = "out of memory (try --tile 512 or a lower --memory-limit)"
    elif isinstance(e, OSError):
        msg = f"{e.strerror or type(e).__name__}" + (f" ({e.filename})" if e.filename else "")
    elif isinstance(e, AnyIRError):
        msg = first_line(e, 400)
    else:
        msg = f"unexpected {type(e).__name__}: {first_line(e)}"
    return msg if msg.startswith(str(src)) else f"{src}: {msg}"


def check_writable(folders) -> None:
    """Make sure files can be written in the output folders, without creating them yet (a model
    that then fails to load leaves nothing behind): an existing folder gets a probe file, a
    missing one needs its nearest existing parent to be a writable folder.  A read-only or
    unreachable output is one error before any work, not one per image after the model loaded."""
    import tempfile

    for folder in sorted(folders, key=str):
        try:
            if folder.is_dir():
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".anyir-restore-", suffix=".probe"):
                    pass
                continue
            parent = folder
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(parent))
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied", str(parent))
        except OSError as e:
            raise AnyIRError(f"-o {folder}: cannot write there ({e.strerror or type(e).__name__}"
                             f"{': ' + str(e.filename) if e.filename and str(e.filename) != str(folder) else ''})") from None


if __name__ == "__main__":
    from . import run

    sys.exit(run("anyir-restore", main))
