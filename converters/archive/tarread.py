"""A tar stream parser of our own: ustar, pax (x/g) and GNU long names (L/K), headers
checksummed, every length bounded before anything is read into memory.

``tarfile`` reads pax headers of any declared size into memory and follows its own ideas about
links on extraction; this reader only yields what the headers say and lets the caller decide.
Plain, gzip, xz and bzip2 streams are read sequentially (no seeking, no temporary copy).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from converters.refuse import refuse

BLOCK = 512
MAX_META = 1 << 20          # a pax or GNU long-name header larger than this is refused

REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT = b"0", b"\x00", b"1", b"2", b"3", b"4", b"5", b"6", b"7"


@dataclass
class Entry:
    name: str
    type: bytes                  # REG, LNK, SYM, CHR, BLK, DIR, FIFO (AREG/CONT folded into REG)
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str = ""
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)   # xattrs (SCHILY.xattr.*) and the like


def open_stream(path: Path) -> BinaryIO:
    """The decompressed byte stream of a tar, tar.gz, tar.xz or tar.bz2, by magic."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb")
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb")
    return open(path, "rb")


def _num(field_: bytes, where: Path) -> int:
    if field_[:1] in (b"\x80", b"\xff"):          # GNU base-256 for big values
        if field_[:1] == b"\xff":
            refuse(where, "tar header with a negative number")
        return int.from_bytes(field_[1:], "big")
    s = field_.split(b"\x00", 1)[0].strip(b" \x00")
    try:
        return int(s, 8) if s else 0
    except ValueError:
        refuse(where, f"tar header number field {field_!r} is not octal")


def _str(field_: bytes) -> str:
    return field_.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


_STREAM_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError)


def _read(f: BinaryIO, n: int, where: Path) -> bytes:
    try:
        return f.read(n)
    except _STREAM_ERRORS as exc:
        refuse(where, f"corrupt compressed archive ({type(exc).__name__}: {exc})")


def _read_exact(f: BinaryIO, n: int, where: Path) -> bytes:
    buf = _read(f, n, where)
    if len(buf) != n:
        refuse(where, "truncated tar archive")
    return buf


def _pax(data: bytes, where: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError:
            refuse(where, "malformed pax header")
        rec = data[sp + 1:pos + length - 1]   # minus the trailing newline
        if length <= 0 or b"=" not in rec:
            refuse(where, "malformed pax record")
        k, v = rec.split(b"=", 1)
        out[k.decode("utf-8", "surrogateescape")] = v.decode("utf-8", "surrogateescape")
        pos += length
    return out


class TarReader:
    """Iterate entries; after each, ``read_data`` (or ``skip_data``) must consume its bytes."""

    def __init__(self, stream: BinaryIO, where: Path, max_total: int):
        self.f, self.where, self.max_total = stream, where, max_total
        self.consumed = 0
        self._left = 0
        self._pad = 0

    def _take(self, n: int) -> bytes:
        self.consumed += n
        if self.consumed > self.max_total:
            refuse(self.where, f"archive expands beyond {self.max_total} bytes")
        return _read_exact(self.f, n, self.where)

    def entries(self) -> Iterator[Entry]:
        pending: dict[str, str] = {}
        gname_long = glink_long = None
        global_pax: dict[str, str] = {}
        zeros = 0
        while True:
            if self._left or self._pad:
                self.skip_data()
            hdr = _read(self.f, BLOCK, self.where)
            if len(hdr) < BLOCK:
                if zeros or not hdr:
                    return              # tolerate a missing second zero block
                refuse(self.where, "truncated tar header")
            self.consumed += BLOCK
            if hdr == b"\x00" * BLOCK:
                zeros += 1
                if zeros == 2:
                    return
                continue
            zeros = 0
            chk = _num(hdr[148:156], self.where)
            if chk != sum(hdr[:148]) + 8 * 32 + sum(hdr[156:]):
                refuse(self.where, "tar header checksum mismatch (corrupt or not a tar archive)")
            typ = hdr[156:157]
            size = _num(hdr[124:136], self.where)
            if typ in (b"x", b"g", b"L", b"K"):
                if size > MAX_META:
                    refuse(self.where, f"tar metadata header of {size} bytes is beyond {MAX_META}")
                data = self._take(size)
                self._take((-size) % BLOCK)
                if typ == b"x":
                    pending.update(_pax(data, self.where))
                elif typ == b"g":
                    global_pax.update(_pax(data, self.where))
                elif typ == b"L":
                    gname_long = data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
                else:
                    glink_long = data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
                continue
            if typ == b"S":
                refuse(self.where, "GNU sparse tar members are not supported")
            name = _str(hdr[0:100])
            if hdr[257:262] == b"ustar" and hdr[345:500].strip(b"\x00"):
                name = _str(hdr[345:500]) + "/" + name
            pax = {**global_pax, **pending}
            name = pax.pop("path", None) or gname_long or name
            link = pax.pop("linkpath", None) or glink_long or _str(hdr[157:257])
            if "size" in pax:
                size = int(pax.pop("size"))
            pending, gname_long, glink_long = {}, None, None
            if typ in (AREG, CONT):
                typ = REG
            e = Entry(name=name, type=typ, size=size if typ == REG else 0, mode=_num(hdr[100:108], self.where),
                      uid=int(pax.pop("uid", _num(hdr[108:116], self.where))),
                      gid=int(pax.pop("gid", _num(hdr[116:124], self.where))),
                      mtime=float(pax.pop("mtime", _num(hdr[136:148], self.where))), linkname=link,
                      uname=pax.pop("uname", _str(hdr[265:297])), gname=pax.pop("gname", _str(hdr[297:329])),
                      devmajor=_num(hdr[329:337], self.where), devminor=_num(hdr[337:345], self.where), pax=pax)
            # data follows for regular files, and for any other type that declares a size
            self._left, self._pad = size, (-size) % BLOCK
            yield e

    def read_data(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        while self._left:
            n = min(chunk, self._left)
            buf = self._take(n)
            self._left -= n
            yield buf
        if self._pad:
            self._take(self._pad)
            self._pad = 0

    def skip_data(self) -> None:
        for _ in self.read_data():
            pass
