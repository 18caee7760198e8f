"""The backing chain of a qcow2 file, read from its header (no qemu-img, no guest data read).

gc must never delete a layer another kept image still reads through. The header is all it
needs: 4-byte magic, version, then the backing file name's offset (u64) and length (u32). The
name is bounded (qemu's limit is 1023 bytes) and resolved like qemu does: relative to the
directory of the image that names it. A file that is not qcow2 has no backing file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

QCOW2_MAGIC = b"QFI\xfb"
MAX_NAME = 1023
MAX_DEPTH = 64          # deeper chains than this are not something we made


def backing_name(path: Path) -> str | None:
    """The backing file name stored in ``path``'s qcow2 header, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
            if len(head) < 20 or head[:4] != QCOW2_MAGIC:
                return None
            offset, size = struct.unpack(">QI", head[8:20])
            if offset == 0 or size == 0 or size > MAX_NAME:
                return None
            f.seek(offset)
            raw = f.read(size)
    except OSError:
        return None
    if len(raw) != size:
        return None
    return raw.decode("utf-8", errors="surrogateescape")


def backing_chain(path: Path) -> list[Path]:
    """Every ancestor of ``path`` (nearest first), as absolute paths; stops at a missing file,
    a protocol name (``json:``, ``nbd:``), a loop or MAX_DEPTH."""
    chain: list[Path] = []
    seen = {os.path.realpath(path)}
    current = Path(path)
    for _ in range(MAX_DEPTH):
        name = backing_name(current)
        if name is None or (":" in name.split("/", 1)[0]):
            break
        nxt = Path(name) if os.path.isabs(name) else current.parent / name
        nxt = Path(os.path.abspath(nxt))
        chain.append(nxt)
        real = os.path.realpath(nxt)
        if real in seen or not nxt.is_file():
            break
        seen.add(real)
        current = nxt
    return chain
