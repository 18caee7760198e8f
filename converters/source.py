"""What the user handed us, classified by content and opened safely into a SourceVM (disks) or
a root filesystem (container), without writing anywhere but a private folder of ours.

Kinds: ``disk`` (one or more disk images), ``ploop`` (a ``root.hdd/`` bundle), ``ova`` (archive,
folder, or a bare .ovf), ``vmx``, ``libvirt`` (domain XML), ``rootfs`` (tarball or folder, also
an OpenVZ private area: ``fs/`` for simfs, ``root.hdd/`` for ploop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from converters import libvirt_xml, ova, ovf, vmx
from converters.archive import tarread, zipsafe
from converters.disk import ploop
from converters.disk.check import safe_disk
from converters.model import SourceVM, default_vm
from converters.refuse import refuse

from builder.errors import UsageError


@dataclass
class Source:
    kind: str
    paths: list[Path]
    vm: SourceVM | None = None          # every kind but rootfs
    rootfs: Path | None = None          # the tarball or folder, for kind rootfs
    notes: list[str] = field(default_factory=list)


def _tar_members(path: Path, limit: int = 16) -> list[str] | None:
    """The first member names if ``path`` is a (compressed) tar, else None. Reads a few blocks."""
    try:
        with tarread.open_stream(path) as s:
            rd = tarread.TarReader(s, path, 1 << 30)
            names = []
            for e in rd.entries():
                names.append(e.name)
                if len(names) >= limit:
                    break
            return names
    except Exception:  # noqa: BLE001 - not a tar (or a broken one): the caller tries other kinds
        return None


def classify(srcs: list[Path]) -> tuple[str, Path]:
    if not srcs:
        raise UsageError("name at least one source (disk image, OVA, .vmx, domain XML, rootfs)")
    for s in srcs:
        if not s.exists() and not s.is_symlink():
            raise UsageError(f"{s}: no such file or folder")
    first = srcs[0]
    if len(srcs) > 1:
        return "disk", first
    if first.is_dir():
        if ploop.is_bundle(first):
            return "ploop", first
        if ploop.is_bundle(first / "root.hdd"):
            return "ploop", first / "root.hdd"
        if any(first.glob("*.ovf")):
            return "ova", first
        if (first / "etc").is_dir() and not (first / "etc").is_symlink():
            return "rootfs", first
        if (first / "fs" / "etc").is_dir() and not (first / "fs").is_symlink():
            return "rootfs", first / "fs"
        refuse(first, "a folder that is neither an OVA folder, a ploop bundle nor a root filesystem (no etc/)")
    low = first.name.lower()
    if low.endswith(".vmx"):
        return "vmx", first
    if low.endswith(".ovf"):
        return "ova", first
    if low.endswith(".xml"):
        return "libvirt", first
    if zipsafe.is_zip(first):
        return "ova", first
    names = _tar_members(first)
    if names is not None and names:
        if low.endswith(".ova") or any(n.lower().endswith(".ovf") for n in names):
            return "ova", first
        return "rootfs", first
    if low.endswith(".ova"):
        refuse(first, "named .ova but neither a tar nor a zip archive")
    return "disk", first


def open_source(srcs: list[Path], private: Path, name: str | None = None) -> Source:
    """Open the sources; ``private`` is an empty folder of ours (an OVA archive is unpacked there)."""
    srcs = [Path(s).absolute() for s in srcs]
    kind, main = classify(srcs)
    if kind == "rootfs":
        return Source(kind, srcs, rootfs=main)
    if kind == "disk":
        disks = [safe_disk(p) for p in srcs]
        vm = default_vm(name or srcs[0].name.split(".")[0], disks)
    elif kind == "ploop":
        image, fmt = ploop.image_of(main)
        vm = default_vm(name or main.parent.name or main.name, [safe_disk(image, fmt=fmt)], origin="ploop")
    elif kind == "ova":
        vm = ovf.parse(main, main.parent, scratch=private / "inflated") \
            if main.is_file() and main.name.lower().endswith(".ovf") else ova.open_ova(main, private)
    elif kind == "vmx":
        vm = vmx.parse(main)
    else:
        vm = libvirt_xml.parse(main)
    if name:
        vm = SourceVM(**{**vm.__dict__, "name": name})
    return Source(kind, srcs, vm=vm)
