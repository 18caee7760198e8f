"""VHD (qemu "vpc"): the footer (fixed or dynamic) and the dynamic header's parent locators.

Differencing disks are refused: they name a parent file. Layout: Microsoft "Virtual Hard Disk
Image Format Specification" 1.0. Big-endian.
"""

from __future__ import annotations

import struct
from pathlib import Path

from converters.disk.header import DiskHeader, read_at, size_of
from converters.refuse import refuse

COOKIE = b"conectix"
DYN_COOKIE = b"cxsparse"
FIXED, DYNAMIC, DIFFERENCING = 2, 3, 4


def footer(path: Path, head: bytes) -> bytes | None:
    """The footer: a copy at offset 0 for dynamic disks, the last 512 bytes always."""
    if head[:8] == COOKIE:
        return head[:512]
    size = size_of(path)
    if size >= 512:
        tail = read_at(path, size - 512, 512)
        if tail[:8] == COOKIE:
            return tail
    return None


def parse(path: Path, head: bytes) -> DiskHeader:
    foot = footer(path, head)
    if foot is None or len(foot) < 512:
        refuse(path, "no VHD footer")
    data_off, = struct.unpack(">Q", foot[16:24])
    current_size, = struct.unpack(">Q", foot[48:56])
    cyl, heads, secs = struct.unpack(">HBB", foot[56:60])
    disk_type, = struct.unpack(">I", foot[60:64])
    if disk_type == DIFFERENCING:
        refuse(path, "VHD is a differencing disk; it names a parent file",
               hint="merge it into its parent where it was made and pass the result")
    if disk_type not in (FIXED, DYNAMIC):
        refuse(path, f"VHD disk type {disk_type} is unknown")
    sub = "fixed" if disk_type == FIXED else "dynamic"
    if disk_type == DYNAMIC:
        dyn = read_at(path, data_off, 1024)
        if dyn[:8] != DYN_COOKIE:
            refuse(path, "dynamic VHD without its dynamic header")
        for i in range(8):
            loc = dyn[576 + 24 * i:600 + 24 * i]
            code, = struct.unpack(">I", loc[:4])
            if code:
                refuse(path, f"VHD has a parent locator ({loc[:4]!r}); it refers to another file",
                       hint="merge it into its parent where it was made")
        if any(dyn[40:56]):
            refuse(path, "VHD dynamic header names a parent (parent unique id set)")
    chs = cyl * heads * secs * 512
    return DiskHeader(path=path, format="vpc", virtual_size=current_size, subformat=sub, files=(path,),
                      alt_sizes=(chs,) if chs else ())
