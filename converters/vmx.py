"""A VMware ``.vmx`` to a SourceVM.

Rules (V22 input/parse_vmx.ml): only ``key = "value"`` lines; keys case-insensitive; ``|XX`` is
a hex escape; ``ns.present = "FALSE"`` drops the device. Unlike virt-v2v, disk paths must be
relative to the .vmx and stay inside its folder: an absolute path is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from converters.disk.check import safe_disk
from converters.model import Nic, SourceVM
from converters.paths import inside
from converters.refuse import refuse

MAX_VMX = 1 << 20
_LINE = re.compile(r'^\s*([A-Za-z0-9_.:\-]+)\s*=\s*"(.*)"\s*$')
_DISK = re.compile(r"^(scsi|sata|nvme|ide)(\d+):(\d+)\.filename$")
_NIC = re.compile(r"^ethernet(\d+)\.present$")
BUS_ORDER = {"scsi": 0, "sata": 1, "nvme": 2, "ide": 3}


def _unescape(v: str) -> str:
    return re.sub(r"\|([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), v)


def read(path: Path) -> dict[str, str]:
    if path.stat().st_size > MAX_VMX:
        refuse(path, "a .vmx larger than 1 MiB")
    out: dict[str, str] = {}
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        m = _LINE.match(line)
        if m:
            out[m.group(1).lower()] = _unescape(m.group(2))
    return out


def _present(kv: dict[str, str], ns: str) -> bool:
    return kv.get(f"{ns}.present", "true").lower() not in ("false", "0", "no")


def parse(path: Path) -> SourceVM:
    kv = read(path)
    notes: list[str] = []
    disks = []
    for key in sorted((k for k in kv if _DISK.match(k)),
                      key=lambda k: (BUS_ORDER[_DISK.match(k).group(1)], int(_DISK.match(k).group(2)),
                                     int(_DISK.match(k).group(3)))):
        bus, ctrl, unit = _DISK.match(key).groups()
        dev = key[:-len(".filename")]
        if not (_present(kv, dev) and _present(kv, f"{bus}{ctrl}")):
            continue
        dtype = kv.get(f"{dev}.devicetype", "").lower()
        if "cdrom" in dtype or dtype in ("atapi-cdrom",):
            notes.append(f"{dev}: CD-ROM skipped")
            continue
        name = kv[key]
        disk_path = inside(path.parent, name, path, f"{dev}.fileName")
        if not disk_path.is_file():
            refuse(path, f"{dev}.fileName {name!r} is not a file beside the .vmx")
        controller = kv.get(f"{bus}{ctrl}.virtualdev") or None
        disks.append(safe_disk(disk_path, bus=bus, controller=controller))
    if not disks:
        refuse(path, "the .vmx names no disk (scsiX:Y/sataX:Y/nvmeX:Y/ideX:Y.fileName)")
    nics = []
    for key in sorted((k for k in kv if _NIC.match(k)), key=lambda k: int(_NIC.match(k).group(1))):
        ns = key[:-len(".present")]
        if not _present(kv, ns):
            continue
        mac = kv.get(f"{ns}.generatedaddress") or kv.get(f"{ns}.address") or None
        nics.append(Nic(mac=mac, model=kv.get(f"{ns}.virtualdev") or None,
                        network=kv.get(f"{ns}.networkname") or None))
    mem = _int(kv.get("memsize", "32"), path, "memsize")
    if "memsize" not in kv:
        notes.append("memsize missing: 32 MiB (VMware's default) assumed")
    cores = kv.get("cpuid.corespersocket")
    firmware = "uefi" if kv.get("firmware", "").lower() == "efi" else "bios"
    return SourceVM(name=kv.get("displayname") or path.stem, vcpus=_int(kv.get("numvcpus", "1"), path, "numvcpus"),
                    memory_mib=mem, firmware=firmware, disks=disks, nics=nics, origin="vmx",
                    cores_per_socket=_int(cores, path, "cpuid.coresPerSocket") if cores else None, notes=notes)


def _int(v: str, path: Path, what: str) -> int:
    try:
        n = int(v)
    except ValueError:
        refuse(path, f"{what} = {v!r} is not a number")
    if not 0 < n < 1 << 30:
        refuse(path, f"{what} = {n} is out of range")
    return n
