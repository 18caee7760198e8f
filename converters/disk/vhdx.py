"""VHDX: file identifier, region table, metadata table; differencing disks are refused.

A differencing VHDX has the HasParent file parameter and a Parent Locator metadata item naming
its parent's path. Layout: MS-VHDX 2.0. Little-endian; GUIDs in mixed-endian (bytes_le).
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from converters.disk.header import DiskHeader, read_at
from converters.refuse import refuse

MAGIC = b"vhdxfile"
REGION_TABLES = (192 << 10, 256 << 10)
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
HAS_PARENT = 1 << 1


def _metadata_region(path: Path) -> tuple[int, int]:
    for off in REGION_TABLES:
        tbl = read_at(path, off, 64 << 10)
        if tbl[:4] != b"regi":
            continue
        count, = struct.unpack("<I", tbl[8:12])
        if count > 2047:
            refuse(path, f"VHDX region table claims {count} entries")
        for i in range(count):
            e = tbl[16 + 32 * i:48 + 32 * i]
            guid = uuid.UUID(bytes_le=e[:16])
            f_off, length, required = struct.unpack("<QII", e[16:32])
            if guid == METADATA_REGION:
                return f_off, length
            if guid != BAT_REGION and required & 1:
                refuse(path, f"VHDX has an unknown required region {guid}")
    refuse(path, "VHDX without a readable region table / metadata region")


def parse(path: Path, head: bytes) -> DiskHeader:
    meta_off, meta_len = _metadata_region(path)
    meta = read_at(path, meta_off, min(meta_len, 64 << 10))
    if meta[:8] != b"metadata":
        refuse(path, "VHDX metadata table signature missing")
    count, = struct.unpack("<H", meta[10:12])
    if count > 2047:
        refuse(path, f"VHDX metadata table claims {count} entries")
    size = None
    for i in range(count):
        e = meta[32 + 32 * i:64 + 32 * i]
        item = uuid.UUID(bytes_le=e[:16])
        off, length = struct.unpack("<II", e[16:24])
        if item == PARENT_LOCATOR:
            refuse(path, "VHDX is a differencing disk (parent locator); it refers to another file",
                   hint="merge it into its parent where it was made (Hyper-V: Edit Disk → Merge)")
        if item == FILE_PARAMETERS:
            _block, flags = struct.unpack("<II", read_at(path, meta_off + off, 8))
            if flags & HAS_PARENT:
                refuse(path, "VHDX is a differencing disk (HasParent)",
                       hint="merge it into its parent where it was made")
        if item == VIRTUAL_DISK_SIZE:
            size, = struct.unpack("<Q", read_at(path, meta_off + off, 8))
    return DiskHeader(path=path, format="vhdx", virtual_size=size, files=(path,))
