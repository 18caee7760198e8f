"""The registry edits that make a virtio disk bootable, as data (spec §2.2, §2.3).

Current virt-v2v (HEAD) behaviour, where it differs from 2.2: PCI IDs without SUBSYS (so other
hypervisors' subsystem vendors match too), the DriverDatabase package label
``guestor.inf_<arch>_<16 hex>`` (2.2's ``guestor.inf_tmp`` breaks ``pnputil /e`` and Windows
Update), and both viostor and vioscsi registered, so the disk boots on either bus.

All paths are below a hive root; ``ccs`` is the real ControlSetNNN that Select\\Current names.
"""

from __future__ import annotations

from builder.windows.hive_edits import (REG_EXPAND_SZ, REG_SZ, KeyEdit, Value, decode_sz, sz)

SCSI_ADAPTER_CLASS = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
SCSI_ADAPTER_CLASS_LE = bytes.fromhex("7be9364d25e3ce11bfc108002be10318")

# legacy and modern (virtio 1.0) PCI IDs, without SUBSYS
PCI_IDS = {
    "viostor": ("VEN_1AF4&DEV_1001&REV_00", "VEN_1AF4&DEV_1042&REV_01"),
    "vioscsi": ("VEN_1AF4&DEV_1004&REV_00", "VEN_1AF4&DEV_1048&REV_01"),
}
BLOCK_DRIVERS = tuple(PCI_IDS)

# One DriverDatabase package, as virt-v2v writes it; one configuration per driver.
INF = "guestor.inf"
CONFIGURATION = {"viostor": "guestor_conf", "vioscsi": "guestor_vioscsi_conf"}
VIRTIO_DIR = r"%SystemRoot%\Drivers\VirtIO"


def package_label(win_arch: str) -> str:
    """``guestor.inf_amd64_0000000000000000``: the driver-store name format Windows' own
    tools expect (``<inf>_<arch>_<16 hex>``), with the hash part zero as virt-v2v HEAD does."""
    return f"{INF}_{win_arch}_{'0' * 16}"


def services(ccs: str, drv: str) -> KeyEdit:
    return KeyEdit("SYSTEM", (ccs, "Services", drv), (
        Value.dword("Type", 1), Value.dword("Start", 0), Value.sz("Group", "SCSI miniport"),
        Value.dword("ErrorControl", 1), Value.expand_sz("ImagePath", f"system32\\drivers\\{drv}.sys"),
    ), why=f"boot-start service for the {drv} storage driver")


def critical_device_database(ccs: str, drv: str) -> list[KeyEdit]:
    return [KeyEdit("SYSTEM", (ccs, "Control", "CriticalDeviceDatabase", f"PCI#{pci}"), (
        Value.sz("Service", drv), Value.sz("ClassGUID", SCSI_ADAPTER_CLASS),
    ), why=f"{drv} bound to PCI {pci} at boot (before Windows 8)") for pci in PCI_IDS[drv]]


def driver_database(drivers: list[str], win_arch: str) -> list[KeyEdit]:
    label = package_label(win_arch)
    confs = [CONFIGURATION[d] for d in drivers]
    why = "boot drivers in the driver database (Windows 8 and later)"
    version = b"\x00\xff\x09\x00\x00\x00\x00\x00" + SCSI_ADAPTER_CLASS_LE + b"\x00" * 24
    edits = [
        KeyEdit("SYSTEM", ("DriverDatabase", "DriverInfFiles", INF), (
            Value.multi_sz("", [label]), Value.sz("Active", label),
            Value.multi_sz("Configurations", confs)), why=why),
        KeyEdit("SYSTEM", ("DriverDatabase", "DriverPackages", label), (
            Value.binary("Version", version),), why=why),
    ]
    for d in drivers:
        edits.append(KeyEdit("SYSTEM", ("DriverDatabase", "DriverPackages", label, "Configurations",
                                        CONFIGURATION[d]),
                             (Value.dword("ConfigFlags", 0), Value.sz("Service", d)), why=why))
        for pci in PCI_IDS[d]:
            edits.append(KeyEdit("SYSTEM", ("DriverDatabase", "DeviceIds", "PCI", pci),
                                 (Value.binary(INF, b"\x01\xff\x00\x00"),), why=why))
            edits.append(KeyEdit("SYSTEM", ("DriverDatabase", "DriverPackages", label, "Descriptors",
                                            "PCI", pci),
                                 (Value.sz("Configuration", CONFIGURATION[d]),), why=why))
    return edits


def crash_control(ccs: str) -> KeyEdit:
    return KeyEdit("SYSTEM", (ccs, "Control", "CrashControl"), (Value.dword("AutoReboot", 0),),
                   why="a boot failure (0x7B) stays on screen instead of a reboot loop")


def device_path(current: tuple[int, bytes] | None) -> KeyEdit:
    """DevicePath gains ``%SystemRoot%\\Drivers\\VirtIO`` once; type and other entries kept.

    A missing value gets Windows' default (``%SystemRoot%\\inf``) plus ours, as EXPAND_SZ."""
    path = ("Microsoft", "Windows", "CurrentVersion")
    why = "Plug and Play looks for the staged drivers here"
    if current is None or current[0] not in (REG_SZ, REG_EXPAND_SZ):
        return KeyEdit("SOFTWARE", path, (Value.expand_sz("DevicePath", r"%SystemRoot%\inf;" + VIRTIO_DIR),),
                       why=why)
    t, data = current
    text = decode_sz(data)
    entries = [e.strip().lower() for e in text.split(";")]
    if VIRTIO_DIR.lower() in entries:
        return KeyEdit("SOFTWARE", path, (Value("DevicePath", t, data),), why=why)
    new = (text.rstrip(";") + ";" if text else "") + VIRTIO_DIR
    return KeyEdit("SOFTWARE", path, (Value("DevicePath", t, sz(new)),), why=why)


def storage_edits(ccs: str, drivers: list[str], win_arch: str, use_driver_database: bool) -> list[KeyEdit]:
    edits = [services(ccs, d) for d in drivers]
    if use_driver_database:
        edits += driver_database(drivers, win_arch)
    else:
        for d in drivers:
            edits += critical_device_database(ccs, d)
    return edits
