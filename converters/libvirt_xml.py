"""A libvirt domain XML to a SourceVM: name, memory (with unit), vcpu, firmware
(``os@firmware`` or a pflash loader), file disks in order, NICs (MAC, model).

Only ``type='file'`` disks are accepted, and like every reference in an input they must lie in
the XML's folder: block devices, network disks (nbd, http, iscsi…) and pool volumes would read
something other than the files we were given.
"""

from __future__ import annotations

from pathlib import Path

from converters import safexml
from converters.disk.check import safe_disk
from converters.model import Nic, SourceDisk, SourceVM
from converters.paths import inside
from converters.refuse import refuse
from converters.units import to_mib

BUS = {"virtio": "virtio", "scsi": "scsi", "sata": "sata", "ide": "ide", "usb": "usb", "xen": "xen"}


def parse(path: Path) -> SourceVM:
    root = safexml.parse(path, "libvirt domain XML", 1 << 20)
    if root.tag != "domain":
        refuse(path, f"root element <{root.tag}> is not a libvirt <domain>")
    name = safexml.text(root, "name") or path.stem
    mem_el = safexml.child(root, "memory")
    notes: list[str] = []
    if mem_el is None or not (mem_el.text or "").strip().isdigit():
        mem = 2048
        notes.append("no <memory>: 2048 MiB assumed")
    else:
        mem = to_mib(int(mem_el.text.strip()), mem_el.get("unit"), default_unit="KiB")
        if mem is None:
            refuse(path, f"<memory unit={mem_el.get('unit')!r}> not understood")
    vcpu_t = safexml.text(root, "vcpu", "1")
    if not vcpu_t.isdigit() or not 0 < int(vcpu_t) < 4096:
        refuse(path, f"<vcpu> {vcpu_t!r} is not a sane count")
    os_el = safexml.child(root, "os")
    firmware = "bios"
    if os_el is not None:
        loader = safexml.child(os_el, "loader")
        if os_el.get("firmware") == "efi" or (loader is not None and loader.get("type") == "pflash"):
            firmware = "uefi"
    devices = safexml.child(root, "devices")
    disks: list[SourceDisk] = []
    nics: list[Nic] = []
    for d in (devices if devices is not None else []):
        if d.tag == "disk":
            if d.get("device", "disk") != "disk":
                notes.append(f"{d.get('device')} skipped")
                continue
            kind = d.get("type", "file")
            src = safexml.child(d, "source")
            if kind != "file":
                what = (src.get("protocol") if src is not None and src.get("protocol") else kind)
                refuse(path, f"disk of type {kind!r} ({what}) is not accepted: only file disks are read",
                       hint="copy the disk into a file beside the XML and point <source file=…> at it")
            if src is None or not src.get("file"):
                refuse(path, "file disk without <source file=…>")
            p = Path(src.get("file"))
            rel = str(p.relative_to(path.parent.resolve())) if p.is_absolute() and \
                p.resolve().is_relative_to(path.parent.resolve()) else src.get("file")
            disk_path = inside(path.parent, rel, path, "disk source file")
            target = safexml.child(d, "target")
            bus = BUS.get(target.get("bus")) if target is not None else None
            declared = (safexml.child(d, "driver").get("type") if safexml.child(d, "driver") is not None
                        else None)
            disk = safe_disk(disk_path, bus=bus)
            if declared and declared != disk.format:
                refuse(path, f"the XML says {src.get('file')!r} is {declared}, its header says {disk.format}")
            disks.append(disk)
        elif d.tag == "interface":
            mac_el, model_el, src = safexml.child(d, "mac"), safexml.child(d, "model"), safexml.child(d, "source")
            mac = mac_el.get("address") if mac_el is not None else None
            if mac and mac.replace(":", "").strip("0") == "":
                mac = None
            nics.append(Nic(mac=mac, model=model_el.get("type") if model_el is not None else None,
                            network=(src.get("network") or src.get("bridge")) if src is not None else None))
    if not disks:
        refuse(path, "the domain XML lists no disk")
    return SourceVM(name=name, vcpus=int(vcpu_t), memory_mib=mem, firmware=firmware, disks=disks, nics=nics,
                    origin="libvirt", notes=notes)
