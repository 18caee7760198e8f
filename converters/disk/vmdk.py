"""VMDK: the sparse extent header, its embedded descriptor, and descriptor files with extents.

Refused: extents outside the input's folder (absolute, ``..``, symlinked out, protocol names),
deltas (``parentCID`` other than ffffffff, any ``parentFileNameHint``), raw device mappings and
ESX COWD sparse files. Layout: VMware "Virtual Disk Format 5.0"; QEMU block/vmdk.c.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from converters.disk.header import DiskHeader, read_at, size_of
from converters.paths import check_name, inside
from converters.refuse import refuse

SPARSE_MAGIC = b"KDMV"
COWD_MAGIC = b"COWD"
MAX_DESCRIPTOR = 64 << 10
ACCEPTED_CREATE = {"monolithicsparse", "streamoptimized", "monolithicflat", "twogbmaxextentsparse",
                   "twogbmaxextentflat", "vmfs"}
ACCEPTED_EXTENT = {"SPARSE", "FLAT", "ZERO", "VMFS"}
_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$')


def looks_like_descriptor(head: bytes) -> bool:
    text = head[:1024].decode("latin-1").lower()
    return text.lstrip().startswith("# disk descriptorfile") or ("createtype" in text and "version=" in text)


def parse_descriptor(text: str, where: Path) -> tuple[dict[str, str], list[tuple[str, int, str, str | None]]]:
    """Key/value lines (lower-cased keys) and extent lines (access, sectors, type, file)."""
    keys: dict[str, str] = {}
    extents = []
    for raw in text.splitlines():
        line = raw.strip().rstrip("\x00")
        if not line or line.startswith("#"):
            continue
        m = _EXTENT.match(line)
        if m:
            extents.append((m.group(1), int(m.group(2)), m.group(3).upper(), m.group(4)))
            continue
        if "=" in line:
            k, v = line.split("=", 1)
            keys[k.strip().lower()] = v.strip().strip('"')
    if keys.get("parentfilenamehint") is not None:
        refuse(where, f"vmdk is a delta (snapshot) of {keys['parentfilenamehint']!r}; it needs its parent",
               hint="consolidate the snapshots where the VM lives and export a single disk")
    parent = keys.get("parentcid", "ffffffff").lower()
    if parent != "ffffffff":
        refuse(where, f"vmdk is a delta (parentCID={parent}); it needs its parent",
               hint="consolidate the snapshots where the VM lives and export a single disk")
    return keys, extents


def _sparse(path: Path, head: bytes) -> DiskHeader:
    hdr = read_at(path, 0, 512)
    if len(hdr) < 79:
        refuse(path, "truncated vmdk sparse header")
    version, flags, capacity, _grain, desc_off, desc_size = struct.unpack("<IIQQQQ", hdr[4:44])
    if version not in (1, 2, 3):
        refuse(path, f"vmdk sparse header version {version} is unknown")
    sub = "monolithicSparse"
    if desc_off and desc_size:
        if desc_size * 512 > MAX_DESCRIPTOR:
            refuse(path, f"embedded vmdk descriptor of {desc_size * 512} bytes is beyond {MAX_DESCRIPTOR}")
        text = read_at(path, desc_off * 512, desc_size * 512).split(b"\x00", 1)[0].decode("utf-8", "replace")
        keys, extents = parse_descriptor(text, path)
        sub = keys.get("createtype", sub)
        if sub.lower() not in ("monolithicsparse", "streamoptimized"):
            refuse(path, f"sparse vmdk declares createType {sub!r} in its embedded descriptor")
        for _acc, _n, kind, name in extents:
            if kind != "SPARSE":
                refuse(path, f"embedded descriptor lists a {kind} extent; only the file itself may be an extent")
            if name is not None:
                check_name(name, path, "embedded extent")
    return DiskHeader(path=path, format="vmdk", virtual_size=capacity * 512, subformat=sub, files=(path,))


def _descriptor_file(path: Path) -> DiskHeader:
    if size_of(path) > MAX_DESCRIPTOR:
        refuse(path, "a vmdk descriptor larger than 64 KiB")
    text = read_at(path, 0, MAX_DESCRIPTOR).decode("utf-8", "replace")
    keys, extents = parse_descriptor(text, path)
    create = keys.get("createtype", "")
    if create.lower() not in ACCEPTED_CREATE:
        refuse(path, f"vmdk createType {create!r} is not accepted "
               f"(accepted: {', '.join(sorted(ACCEPTED_CREATE))})")
    if not extents:
        refuse(path, "vmdk descriptor lists no extents")
    files: list[Path] = [path]
    total = 0
    for _acc, sectors, kind, name in extents:
        total += sectors * 512
        if kind not in ACCEPTED_EXTENT:
            refuse(path, f"vmdk extent type {kind} is not accepted (raw device mappings and ESX "
                   "sparse files read outside the image)")
        if kind == "ZERO":
            continue
        if name is None:
            refuse(path, f"vmdk {kind} extent without a file name")
        target = inside(path.parent, name, path, "vmdk extent")
        if not target.is_file():
            refuse(path, f"vmdk extent {name!r} is missing or not a regular file")
        if kind == "SPARSE":
            magic = read_at(target, 0, 4)
            if magic != SPARSE_MAGIC:
                refuse(path, f"vmdk SPARSE extent {name!r} has no sparse header")
            _sparse(target, magic)          # its own embedded descriptor must be clean too
        files.append(target)
    return DiskHeader(path=path, format="vmdk", virtual_size=total, subformat=create, files=tuple(files))


def parse(path: Path, head: bytes) -> DiskHeader:
    if head[:4] == COWD_MAGIC:
        refuse(path, "ESX COWD sparse vmdk (a snapshot format); not accepted",
               hint="export the disk as a monolithic or streamOptimized vmdk")
    if head[:4] == SPARSE_MAGIC:
        return _sparse(path, head)
    return _descriptor_file(path)
