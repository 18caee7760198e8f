"""Append files to a Linux initrd as a second gzip'd newc cpio archive.

The kernel unpacks concatenated initramfs archives in order and a later member replaces an
earlier file of the same name, so ``cat initrd.gz extra.cpio.gz`` adds or overrides files
without unpacking, repacking or even understanding the original. The writer is pure Python
(no cpio binary, no root, deterministic bytes: mtime 0, owner root) so the result is stable
for the cache. A small reader exists only to fetch a file the original already holds (the
installer's ``/etc/inittab``) so that it can be extended rather than replaced blindly.
"""

from __future__ import annotations

import gzip
import io
import shutil
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from builder.errors import InstallerError

_MAGIC = b"070701"          # newc, no checksums
_HEADER_LEN = 110
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Member:
    """One file for the archive. ``name`` is relative to the initramfs root (no leading /)."""

    name: str
    data: bytes = b""
    mode: int = 0o644          # permission bits; the file type comes from ``kind``
    kind: int = stat.S_IFREG   # stat.S_IFREG or stat.S_IFDIR
    mtime: int = 0             # fixed so the archive bytes depend only on the content


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def _entry(ino: int, name: str, mode: int, data: bytes, mtime: int, nlink: int) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = _MAGIC + b"".join(b"%08X" % f for f in fields)
    out = header + encoded + b"\0" * _pad4(len(header) + len(encoded))
    return out + data + b"\0" * _pad4(len(data))


def newc_archive(members: list[Member]) -> bytes:
    """An uncompressed newc cpio archive holding ``members`` in order, with its trailer."""
    parts = []
    for ino, m in enumerate(members, start=1):
        name = m.name.lstrip("/")
        if not name or "\0" in name or any(p in ("", ".", "..") for p in name.split("/")):
            raise ValueError(f"bad cpio member name {m.name!r}")
        if m.kind == stat.S_IFDIR:
            if m.data:
                raise ValueError(f"directory member {name!r} cannot carry data")
            parts.append(_entry(ino, name, stat.S_IFDIR | m.mode, b"", m.mtime, 2))
        elif m.kind == stat.S_IFREG:
            parts.append(_entry(ino, name, stat.S_IFREG | m.mode, m.data, m.mtime, 1))
        else:
            raise ValueError(f"unsupported cpio member type for {name!r}")
    parts.append(_entry(0, _TRAILER, 0, b"", 0, 1))
    return b"".join(parts)


def gzip_bytes(data: bytes) -> bytes:
    # mtime=0 keeps the gzip header free of the build time (reproducible bytes)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def append_members(src: Path, dst: Path, members: list[Member]) -> None:
    """Write ``dst`` = the bytes of ``src`` followed by one gzip'd newc archive of ``members``."""
    extra = gzip_bytes(newc_archive(members))
    tmp = dst.with_name(dst.name + ".part")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.write(extra)
    tmp.replace(dst)


# -- reading (only to look up a file the original initrd already holds) ------------------

def _decompressed_streams(blob: bytes) -> Iterator[bytes]:
    """Each archive in an initrd: gzip members decompressed; NUL padding between them skipped."""
    pos = 0
    while pos < len(blob):
        if blob[pos] == 0:
            pos += 1
            continue
        if blob[pos:pos + 2] == b"\x1f\x8b":
            d = zlib.decompressobj(wbits=31)
            out = d.decompress(blob[pos:])
            if not d.eof:
                raise InstallerError("initrd: truncated gzip member")
            yield out
            pos = len(blob) - len(d.unused_data)
        elif blob[pos:pos + 6] == _MAGIC:
            yield blob[pos:]   # an uncompressed archive runs to its trailer; the reader stops there
            return
        else:
            raise InstallerError(f"initrd: unsupported archive format at byte {pos} "
                                 f"(starts {blob[pos:pos + 4].hex()}): only gzip'd or plain newc cpio")


def _members(archive: bytes) -> Iterator[tuple[str, int, bytes]]:
    pos = 0
    while pos + _HEADER_LEN <= len(archive):
        if archive[pos] == 0:  # padding after a trailer
            pos += 1
            continue
        header = archive[pos:pos + _HEADER_LEN]
        if header[:6] != _MAGIC and header[:6] != b"070702":
            raise InstallerError(f"initrd: not a newc cpio member at offset {pos}")
        f = [int(header[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = f[1], f[6], f[11]
        name_start = pos + _HEADER_LEN
        name = archive[name_start:name_start + namesize - 1].decode("utf-8", "replace")
        data_start = name_start + namesize
        data_start += _pad4(data_start)
        data = archive[data_start:data_start + filesize]
        pos = data_start + filesize
        pos += _pad4(pos)
        if name == _TRAILER:
            # a plain archive may be followed by another; the caller only needs the first here
            return
        yield name, mode, data


def _normal(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def read_file(initrd: Path, name: str) -> bytes | None:
    """The content the kernel would see at ``/name`` after unpacking ``initrd`` (last wins)."""
    want = name.lstrip("/")
    found = None
    for archive in _decompressed_streams(initrd.read_bytes()):
        for member, mode, data in _members(archive):
            if _normal(member) == want:
                found = data if stat.S_ISREG(mode) else None
    return found
