"""Thin helpers over ``qemu-img`` for images we made ourselves (trusted layers in the cache).

Untrusted images go through builder.image.probe first; this module never looks at those.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder.errors import BuildError, ToolFailed
from builder.host import proc
from builder.host.tools import require

# Metadata operations take well under a second; a convert copies (and may compress) a whole
# disk: 10-20 min for a large image on a slow disk, so its limit is generous but finite.
TIMEOUTS = {"convert": 4 * 3600.0}
DEFAULT_TIMEOUT = 300.0


def run(args: list[str], what: str, timeout: float | None = None) -> str:
    limit = timeout if timeout is not None else TIMEOUTS.get(args[0], DEFAULT_TIMEOUT)
    try:
        res = proc.run([require("qemu-img"), *args], what=f"{what}: qemu-img {args[0]}", timeout=limit)
    except ToolFailed as exc:
        raise BuildError(f"{what}: qemu-img {args[0]} failed: {exc.output[-2000:]}") from None
    return res.stdout


def overlay(backing: Path, new: Path, what: str = "overlay", *, backing_format: str = "qcow2") -> Path:
    """A qcow2 layer over ``backing`` (absolute path, so the chain survives renames of ``new``'s dir).

    The one place overlays are made. ``backing_format`` is always spelled out, never probed: a raw
    backing file whose first bytes look like a qcow2 header must stay raw (verify passes the
    format builder.image.probe found for an untrusted image; our own layers are qcow2).
    """
    run(["create", "-q", "-f", "qcow2", "-F", backing_format, "-b", str(Path(backing).resolve()), str(new)],
        what)
    return new


def info(path: Path, what: str = "image", *, fmt: str | None = None) -> dict:
    return json.loads(run(["info", "--output=json", *(["-f", fmt] if fmt else []), str(path)], what))


def convert(src: Path, dst: Path, fmt: str, *, compress: bool = False, options: str | None = None,
            what: str = "convert", src_format: str | None = None) -> Path:
    # src_format: an image that came from outside is read as the format its probe found, never re-probed
    args = ["convert", *(["-f", src_format] if src_format else []), "-O", fmt]
    if compress:
        args.append("-c")
    if options:
        args += ["-o", options]
    run([*args, str(src), str(dst)], what)
    return dst
