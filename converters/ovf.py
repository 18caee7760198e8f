"""An OVF descriptor to a SourceVM: name, vCPUs (+ CoresPerSocket), memory WITH its
AllocationUnits, firmware, disks in order (href confined to the OVA), NICs with MACs.

Namespaces are stripped (OVF 1.x and 2.0 differ only there for what we read); DTDs and
entities are refused (converters.safexml); IDs are matched in Python, never put into XPath.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from xml.etree.ElementTree import Element

from converters import safexml
from converters.disk.check import safe_disk
from converters.model import Nic, SourceDisk, SourceVM
from converters.paths import inside
from converters.refuse import refuse
from converters.units import to_mib, unit_bytes

RT_CPU, RT_MEMORY, RT_IDE, RT_SCSI, RT_NIC, RT_DISK, RT_SATA = "3", "4", "5", "6", "10", "17", "20"
BUS = {RT_IDE: "ide", RT_SCSI: "scsi", RT_SATA: "sata"}
ITEM_TAGS = ("Item", "StorageItem", "EthernetPortItem")


def _items(vhs: Element) -> list[dict[str, str]]:
    out = []
    for it in vhs:
        if it.tag not in ITEM_TAGS:
            continue
        d = {c.tag: (c.text or "").strip() for c in it}
        out.append(d)
    return out


def parse(ovf: Path, base: Path, *, scratch: Path | None = None) -> SourceVM:
    """``scratch``: a folder of ours where gzip-compressed disk files are inflated."""
    root = safexml.parse(ovf, "OVF descriptor")
    if root.tag != "Envelope":
        refuse(ovf, f"root element <{root.tag}> is not an OVF Envelope")
    systems = [e for e in root.iter("VirtualSystem")]
    if len(systems) != 1:
        refuse(ovf, f"OVF describes {len(systems)} virtual systems; exactly one is accepted")
    vs = systems[0]
    name = safexml.text(vs, "Name") or vs.get("id") or ovf.stem
    vhs = safexml.child(vs, "VirtualHardwareSection")
    if vhs is None:
        refuse(ovf, "OVF has no VirtualHardwareSection")
    notes: list[str] = []
    items = _items(vhs)
    by_id = {i.get("InstanceID"): i for i in items if i.get("InstanceID")}

    vcpus, cores = 1, None
    mem_mib = None
    for i in items:
        rt = i.get("ResourceType")
        if rt == RT_CPU:
            vcpus = _int(i.get("VirtualQuantity"), ovf, "CPU VirtualQuantity")
            if i.get("CoresPerSocket"):
                cores = _int(i.get("CoresPerSocket"), ovf, "CoresPerSocket")
        elif rt == RT_MEMORY:
            qty = _int(i.get("VirtualQuantity"), ovf, "memory VirtualQuantity")
            units = i.get("AllocationUnits")
            if not units:
                notes.append("memory AllocationUnits missing: MiB assumed")
            mem_mib = to_mib(qty, units)
            if mem_mib is None:
                refuse(ovf, f"memory AllocationUnits {units!r} not understood")
    if mem_mib is None:
        mem_mib = 2048
        notes.append("no memory item: 2048 MiB assumed")

    firmware = "bios"
    for cfg in vhs.iter("Config"):
        if (cfg.get("key") or "").lower() == "firmware":
            firmware = "uefi" if (cfg.get("value") or "").lower() == "efi" else "bios"

    files = {f.get("id"): f for f in root.iter("File")}
    disks_by_id = {d.get("diskId"): d for d in root.iter("Disk")}
    disks: list[SourceDisk] = []
    nics: list[Nic] = []
    for i in items:
        rt = i.get("ResourceType")
        if rt == RT_DISK:
            disks.append(_disk(i, ovf, base, files, disks_by_id, by_id, scratch))
        elif rt == RT_NIC:
            nics.append(Nic(mac=(i.get("Address") or None), model=i.get("ResourceSubType") or None,
                            network=i.get("Connection") or None))
    if not disks:
        refuse(ovf, "OVF lists no disk (ResourceType 17)")
    return SourceVM(name=name, vcpus=vcpus, memory_mib=mem_mib, firmware=firmware, disks=disks, nics=nics,
                    origin="ova", cores_per_socket=cores, notes=notes)


def _int(v: str | None, ovf: Path, what: str) -> int:
    try:
        n = int(v or "")
    except ValueError:
        refuse(ovf, f"{what} {v!r} is not a number")
    if n <= 0 or n > 1 << 40:
        refuse(ovf, f"{what} {n} is out of range")
    return n


def _disk(item: dict, ovf: Path, base: Path, files: dict, disks_by_id: dict, by_id: dict,
          scratch: Path | None) -> SourceDisk:
    res = item.get("HostResource", "")
    disk_id = res.rsplit("/", 1)[-1] if res.startswith(("ovf:/disk/", "/disk/")) else None
    if disk_id is None or disk_id not in disks_by_id:
        refuse(ovf, f"disk item's HostResource {res!r} names no Disk of the DiskSection")
    ref = disks_by_id[disk_id].get("fileRef")
    f = files.get(ref)
    if f is None:
        refuse(ovf, f"Disk {disk_id!r} names File {ref!r}, which References does not list")
    if f.get("chunkSize"):
        refuse(ovf, f"File {f.get('href')!r} is chunked (ovf:chunkSize); not supported yet",
               hint="export the OVA without ovf:chunkSize")
    href = f.get("href") or ""
    path = inside(base, href, ovf, "OVF File href")
    if not path.is_file():
        refuse(ovf, f"OVF File href {href!r} is not in the OVA")
    compression = (f.get("compression") or "identity").lower()
    if compression == "gzip":
        path = _gunzip(path, ovf, scratch, _capacity(disks_by_id[disk_id], ovf))
    elif compression != "identity":
        refuse(ovf, f"File {href!r} uses ovf:compression={compression!r}; only gzip is understood")
    parent = by_id.get(item.get("Parent"), {})
    bus = BUS.get(parent.get("ResourceType", ""))
    controller = parent.get("ResourceSubType") or None
    return safe_disk(path, bus=bus, controller=controller)


def _capacity(disk: Element, ovf: Path) -> int:
    units = disk.get("capacityAllocationUnits") or "byte"
    per = unit_bytes(units)
    cap = _int(disk.get("capacity"), ovf, "Disk capacity")
    if per is None:
        refuse(ovf, f"Disk capacityAllocationUnits {units!r} not understood")
    return cap * per


def _gunzip(src: Path, ovf: Path, scratch: Path | None, capacity: int) -> Path:
    """Inflate a gzip disk file into ``scratch``; more than the disk's capacity (plus room for a
    format's metadata) is a gzip bomb, refused as soon as it is reached."""
    if scratch is None:
        refuse(ovf, f"{src.name} is gzip-compressed and there is no private folder to inflate it into")
    limit = capacity + (64 << 20)
    scratch.mkdir(parents=True, exist_ok=True)
    dst = scratch / (src.name[:-3] if src.name.endswith(".gz") else src.name)
    written = 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as inp:
            while buf := inp.read(1 << 20):
                written += len(buf)
                if written > limit:
                    refuse(ovf, f"{src.name} inflates beyond its disk's capacity ({capacity} bytes): a gzip bomb")
                out.write(buf)
    except (OSError, EOFError, zlib.error) as exc:
        refuse(ovf, f"{src.name}: corrupt gzip stream ({exc})")
    return dst
