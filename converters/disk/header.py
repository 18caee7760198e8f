"""What a header parser reports, and the bounded reads they all use."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from converters.refuse import refuse

MAX_HEADER_READ = 1 << 20      # no parser reads more than this from one place


@dataclass(frozen=True)
class DiskHeader:
    path: Path
    format: str                          # qemu's driver name: pass it as -f
    virtual_size: int | None             # what the header says (None: format-defined elsewhere)
    subformat: str | None = None
    files: tuple[Path, ...] = ()         # every file qemu will open for this image (itself first)
    alt_sizes: tuple[int, ...] = ()      # other sizes qemu may legitimately report (VHD CHS)
    notes: list[str] = field(default_factory=list)


def read_at(path: Path, offset: int, length: int) -> bytes:
    """At most ``length`` (≤ 1 MiB) bytes at ``offset``; short at end of file."""
    if length > MAX_HEADER_READ or offset < 0:
        refuse(path, f"a header field asks to read {length} bytes at {offset}; that is not a sane header")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def size_of(path: Path) -> int:
    return os.stat(path, follow_symlinks=False).st_size
