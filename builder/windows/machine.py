"""A Windows guest described as QEMU facts: what the install and verify runs boot.

This module says *which* facts a Windows machine has (chipset, firmware, TPM, buses, CD-ROMs);
``builder.runner.machine`` alone turns them into QEMU flags.

- The system disk is on virtio-blk or virtio-scsi (the recipe's ``windows.disk_bus``) and comes
  first in the boot order: while it is blank the firmware falls through to the installer CD, and
  after Setup's first reboot it boots Windows instead of Setup again (the no-prompt CD would
  otherwise restart Setup in a loop).
- CD-ROMs sit on the chipset's IDE/AHCI: Windows PE has no virtio-scsi driver until it loads one
  from ``$WinPEDriver$``, and the driver has to come from a CD it can already read.
- Windows 11 gets q35, UEFI with Microsoft's keys (Secure Boot) and a TPM 2.0 from swtpm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.errors import UsageError
from builder.host.accel import Accel
from builder.runner.machine import Disk, MachineSpec

DISK_BUSES = {"virtio-blk": "virtio", "virtio-scsi": "scsi"}


@dataclass(frozen=True)
class WindowsMachine:
    arch: str                          # x86_64 | i686
    firmware: str                      # bios | uefi
    disk_bus: str = "virtio-blk"       # virtio-blk | virtio-scsi
    secure_boot: bool = False
    tpm: bool = False                  # swtpm-backed TPM 2.0
    memory_mb: int = 2048
    cpus: int = 2


def spec(m: WindowsMachine, accel: Accel, *, system_disk: Path, disk_format: str = "qcow2",
         cdroms: tuple[Path, ...] = (), serial_log: Path | None = None, efi_vars: Path | None = None,
         tpm_state: Path | None = None, smbios_oem_strings: tuple[str, ...] = (),
         fw_cfg: dict[str, str] | None = None, name: str = "ironforge-windows",
         no_reboot: bool = False) -> MachineSpec:
    """The MachineSpec for ``m``; ``cdroms`` in boot order after the system disk."""
    if m.disk_bus not in DISK_BUSES:
        raise UsageError(f"windows.disk_bus: expected one of {', '.join(DISK_BUSES)}, got {m.disk_bus!r}")
    if m.secure_boot and m.firmware != "uefi":
        raise UsageError("windows.secure_boot needs firmware = \"uefi\"")
    disks = [Disk(Path(system_disk), disk_format, DISK_BUSES[m.disk_bus])]
    disks += [Disk(Path(c), "raw", "ide", readonly=True, discard=False, media="cdrom") for c in cdroms]
    return MachineSpec(
        arch=m.arch, accel=accel, memory_mb=m.memory_mb, cpus=m.cpus, firmware=m.firmware,
        chipset="q35" if m.firmware == "uefi" else "pc", secure_boot=m.secure_boot,
        tpm="swtpm" if m.tpm else None, tpm_state=tpm_state, efi_vars=efi_vars,
        disks=tuple(disks), nic="virtio", serial_log=serial_log, fw_cfg=dict(fw_cfg or {}),
        smbios_oem_strings=smbios_oem_strings,
        # Setup reboots between its passes: those reboots must stay inside this one run
        no_reboot=no_reboot, hyperv=True, usb_tablet=True, name=name)
