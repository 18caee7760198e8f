"""Thin helpers over ``qemu-img`` for images we made ourselves (trusted layers in the cache).

Untrusted images go through builder.image.probe first; this module never looks at those.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from builder.errors import BuildError
from builder.host.tools import require


def run(args: list[str], what: str) -> str:
    proc = subprocess.run([require("qemu-img"), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{what}: qemu-img {args[0]} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def overlay(backing: Path, new: Path, what: str = "overlay", *, backing_format: str = "qcow2") -> Path:
    """A qcow2 layer over ``backing`` (absolute path, so the chain survives renames of ``new``'s dir).

    The one place overlays are made. ``backing_format`` is always spelled out, never probed: a raw
    backing file whose first bytes look like a qcow2 header must stay raw (verify passes the
    format builder.image.probe found for an untrusted image; our own layers are qcow2).
    """
    run(["create", "-q", "-f", "qcow2", "-F", backing_format, "-b", str(Path(backing).resolve()), str(new)],
        what)
    return new


def info(path: Path, what: str = "image") -> dict:
    return json.loads(run(["info", "--output=json", str(path)], what))


def convert(src: Path, dst: Path, fmt: str, *, compress: bool = False, options: str | None = None,
            what: str = "convert") -> Path:
    args = ["convert", "-O", fmt]
    if compress:
        args.append("-c")
    if options:
        args += ["-o", options]
    run([*args, str(src), str(dst)], what)
    return dst
