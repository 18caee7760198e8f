"""VDI (VirtualBox): header signature, version and image type; undo and diff images refused."""

from __future__ import annotations

import struct
from pathlib import Path

from converters.disk.header import DiskHeader, read_at
from converters.refuse import refuse

SIGNATURE = 0xBEDA107F
NORMAL, FIXED, UNDO, DIFF = 1, 2, 3, 4


def is_vdi(head: bytes) -> bool:
    return len(head) >= 68 and struct.unpack("<I", head[64:68])[0] == SIGNATURE


def parse(path: Path, head: bytes) -> DiskHeader:
    hdr = read_at(path, 0, 512)
    if len(hdr) < 400:
        refuse(path, "truncated VDI header")
    version, _hsize, image_type = struct.unpack("<III", hdr[68:80])
    if version >> 16 != 1:
        refuse(path, f"VDI version {version >> 16}.{version & 0xffff} is unknown")
    if image_type in (UNDO, DIFF):
        refuse(path, f"VDI is a {'differencing' if image_type == DIFF else 'undo'} image; it needs its parent",
               hint="clone it to a standalone disk in VirtualBox (VBoxManage clonemedium)")
    if image_type not in (NORMAL, FIXED):
        refuse(path, f"VDI image type {image_type} is unknown")
    disk_size, = struct.unpack("<Q", hdr[368:376])
    parent = hdr[440:456]
    if any(parent):
        refuse(path, "VDI names a parent image (uuid_parent set)")
    return DiskHeader(path=path, format="vdi", virtual_size=disk_size,
                      subformat="fixed" if image_type == FIXED else "dynamic", files=(path,))
