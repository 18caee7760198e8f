"""What a foreign VM is, as far as its description (OVF, VMX, libvirt XML) or its disks say.

Every later conversion stage reads these facts; none of them re-parses the source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SourceDisk:
    path: Path              # confined: inside the input's folder or our private extraction dir
    format: str             # detected by converters.disk.detect, passed explicitly to qemu
    bus: str | None = None  # source controller ("scsi", "sata", "ide", "nvme", "virtio"), if known
    controller: str | None = None   # e.g. "pvscsi", "lsilogic"
    virtual_size: int | None = None


@dataclass(frozen=True)
class Nic:
    mac: str | None
    model: str | None
    network: str | None = None


@dataclass(frozen=True)
class SourceVM:
    name: str
    vcpus: int
    memory_mib: int
    firmware: str                       # "bios" | "uefi"
    disks: list[SourceDisk]
    nics: list[Nic]
    origin: str                         # "disk", "ova", "vmx", "libvirt", "ploop", "rootfs"
    cores_per_socket: int | None = None
    notes: list[str] = field(default_factory=list)   # what was assumed or skipped, for the report

    def to_dict(self) -> dict:
        d = asdict(self)
        d["disks"] = [{**asdict(x), "path": str(x.path)} for x in self.disks]
        return d


def default_vm(name: str, disks: list[SourceDisk], origin: str = "disk") -> SourceVM:
    """Bare disks carry no VM description: virt-v2v's defaults (1 vCPU, 2 GiB, BIOS, one NIC)."""
    return SourceVM(name=name, vcpus=1, memory_mib=2048, firmware="bios", disks=disks,
                    nics=[Nic(mac=None, model=None)], origin=origin,
                    notes=["bare disk: 1 vCPU, 2048 MiB, BIOS assumed (no VM description)"])
