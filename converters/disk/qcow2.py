"""qcow2 (and qcow v1 / QED, refused): backing files, external data files, unknown features.

Layout: QEMU docs/interop/qcow2.txt. Everything big-endian.
"""

from __future__ import annotations

import struct
from pathlib import Path

from converters.disk.header import DiskHeader, read_at
from converters.refuse import refuse

MAGIC = b"QFI\xfb"
QED_MAGIC = b"QED\x00"

INCOMPAT_DIRTY, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE = 1 << 0, 1 << 1, 1 << 2
INCOMPAT_COMPRESSION, INCOMPAT_EXTL2 = 1 << 3, 1 << 4
KNOWN_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2

EXT_END, EXT_BACKING_FORMAT, EXT_DATA_FILE, EXT_ENCRYPTION = 0, 0xE2792ACA, 0x44415441, 0x0537BE77
HINT_FLATTEN = "flatten it where it was made: qemu-img convert -O qcow2 in.qcow2 flat.qcow2"


def parse(path: Path, head: bytes) -> DiskHeader:
    if head[:4] == QED_MAGIC:
        refuse(path, "QED image: the format can name a backing file and is not accepted",
               hint="convert it to qcow2 where it was made")
    hdr = read_at(path, 0, 4096)
    if len(hdr) < 72:
        refuse(path, "truncated qcow2 header")
    (version, backing_off, backing_len, cluster_bits, size, crypt) = struct.unpack(">IQIIQI", hdr[4:36])
    if version == 1:
        refuse(path, "qcow version 1 image (can name a backing file; not accepted)", hint=HINT_FLATTEN)
    if version not in (2, 3):
        refuse(path, f"qcow2 header version {version} is unknown")
    if backing_off:
        name = read_at(path, backing_off, min(backing_len, 4096)).decode("utf-8", "replace") \
            if backing_len else "?"
        refuse(path, f"qcow2 names a backing file {name!r}; it would read another file of this host "
               "into the output", hint=HINT_FLATTEN)
    if crypt:
        refuse(path, "qcow2 is encrypted; ironforge has no key for it",
               hint="decrypt it where it was made (qemu-img convert --object secret…)")
    if not 9 <= cluster_bits <= 21:
        refuse(path, f"qcow2 cluster_bits {cluster_bits} is out of range")
    notes: list[str] = []
    header_len = 72
    if version == 3:
        if len(hdr) < 104:
            refuse(path, "truncated qcow2 v3 header")
        incompat, _compat, _autoclear, _order, header_len = struct.unpack(">QQQII", hdr[72:104])
        if incompat & INCOMPAT_DATA_FILE:
            refuse(path, "qcow2 uses an external data file (incompatible feature bit 2); it would read "
                   "another file of this host", hint=HINT_FLATTEN)
        if incompat & INCOMPAT_CORRUPT:
            refuse(path, "qcow2 is marked corrupt", hint="repair it where it was made: qemu-img check -r all")
        unknown = incompat & ~KNOWN_INCOMPAT
        if unknown:
            refuse(path, f"qcow2 has unknown incompatible feature bits {unknown:#x}")
        if incompat & INCOMPAT_DIRTY:
            notes.append("qcow2 dirty bit set (refcounts are repaired on read)")
        if not 104 <= header_len <= 4096 - 8:
            refuse(path, f"qcow2 header_length {header_len} is out of range")
    _extensions(path, hdr, header_len)
    return DiskHeader(path=path, format="qcow2", virtual_size=size, subformat=f"v{version}",
                      files=(path,), notes=notes)


def _extensions(path: Path, hdr: bytes, off: int) -> None:
    """Walk the header extensions (they live in the first cluster, ≥ 512 bytes)."""
    for _ in range(64):
        if off + 8 > len(hdr):
            return
        kind, length = struct.unpack(">II", hdr[off:off + 8])
        if kind == EXT_END:
            return
        if kind == EXT_DATA_FILE:
            name = hdr[off + 8:off + 8 + min(length, 1024)].decode("utf-8", "replace")
            refuse(path, f"qcow2 names an external data file {name!r}", hint=HINT_FLATTEN)
        if kind == EXT_ENCRYPTION:
            refuse(path, "qcow2 carries a full-disk-encryption header")
        off += 8 + ((length + 7) & ~7)
