"""Parallels / ploop image (``.hds``): magic, version 2, size; no external references exist in it.

Layout: QEMU docs/interop/parallels.txt; OpenVZ ploop include/ploop1_image.h.
"""

from __future__ import annotations

import struct
from pathlib import Path

from converters.disk.header import DiskHeader, read_at
from converters.refuse import refuse

MAGICS = (b"WithoutFreeSpace", b"WithouFreSpacExt")


def parse(path: Path, head: bytes) -> DiskHeader:
    hdr = read_at(path, 0, 64)
    if len(hdr) < 64:
        refuse(path, "truncated parallels header")
    version, = struct.unpack("<I", hdr[16:20])
    if version != 2:
        refuse(path, f"parallels header version {version} is unknown")
    nb_sectors, = struct.unpack("<Q", hdr[36:44])
    return DiskHeader(path=path, format="parallels", virtual_size=nb_sectors * 512,
                      subformat=hdr[:16].decode(), files=(path,))
