"""PHONY Windows disks for tests: generated, never a real Windows.

A phony guest has what offline tools read and nothing else: an NTFS volume (made by libguestfs'
mkntfs) with ``Windows\\System32\\config\\{SYSTEM,SOFTWARE}`` hives (written from scratch by
``make_empty_hive`` and filled with python3-hivex), a stub PE ``System32\\cmd.exe`` of the right
machine type, and an MBR (bios) or GPT+ESP (uefi) partition table. It cannot boot.

Disks are qcow2 and cheap: ``make_phony_disks`` makes any number in ONE libguestfs launch, and
``phony_set`` caches a set per session under the shared test cache, keyed by this file's own
digest (change the generator, get new disks). Tests that write must copy a disk first
(``copy_disk``).

Variants for the refusal tests: ``hibernated`` (hiberfil.sys with a HIBR header), ``dynamic``
(the NTFS partition typed as LDM: MBR 0x42 / GPT LDM data), ``truncated-hive`` (SYSTEM cut to
8 KiB), ``sysprepped`` (Setup queued: SetupType=1, CmdLine=oobe\\windeploy.exe), ``linux`` (an
ext4 disk, not Windows at all).
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from builder import arch as archmod
from builder.host import accel as accelmod
from builder.host.guestfs_session import Drive, session
from builder.host.proc import run
from builder.host.tools import require

SCSI_CLASS = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
LDM_DATA = "AF9B60A0-1431-4F62-BC68-3311714A69AD"
DISK_SIGNATURE = b"1234"
NTFS_START = 2048 * 512            # MBR layout: the NTFS partition's byte offset
DISK_SIZE = 128 << 20

# release -> (CurrentVersion, major/minor DWORDs or None, build, ProductName, InstallationType)
OS_FACTS = {
    "7": ("6.1", None, 7601, "Windows 7 Professional", "Client"),
    "10": ("6.3", (10, 0), 19045, "Windows 10 Pro", "Client"),
    "11": ("6.3", (10, 0), 22631, "Windows 10 Home", "Client"),        # real Win11 says 10
    "server-2019": ("6.3", (10, 0), 17763, "Windows Server 2019 Datacenter", "Server"),
    "server-2022": ("6.3", (10, 0), 20348, "Windows Server 2022 Standard", "Server"),
    "server-2025": ("6.3", (10, 0), 26100, "Windows Server 2025 Datacenter", "Server"),
}


@dataclass(frozen=True)
class PhonySpec:
    name: str
    release: str                 # "7", "10", "11", "server-2019", "server-2022", "server-2025"
    arch: str                    # any arch word: "x86", "amd64", …
    firmware: str = "bios"       # bios: MBR; uefi: GPT with an ESP
    variant: str = ""            # "", hibernated, dynamic, truncated-hive, sysprepped, linux
    control_set: int = 1         # Select\Current (2 leaves a stale ControlSet001 beside it)

    @property
    def driver_database(self) -> bool:
        return self.release != "7"


# The guests the issue names, and the refusal variants.
STANDARD = (
    PhonySpec("win7-x86", "7", "x86"),
    PhonySpec("win10-x86", "10", "x86"),
    PhonySpec("win10-amd64", "10", "amd64"),
    PhonySpec("win11-amd64", "11", "amd64", firmware="uefi"),
    PhonySpec("win2k19-amd64", "server-2019", "amd64"),
    PhonySpec("win2k22-amd64", "server-2022", "amd64", firmware="uefi", control_set=2),
)
BAD = (
    PhonySpec("bad-hibernated", "10", "amd64", variant="hibernated"),
    PhonySpec("bad-dynamic", "10", "amd64", variant="dynamic"),
    PhonySpec("bad-dynamic-gpt", "10", "amd64", firmware="uefi", variant="dynamic"),
    PhonySpec("bad-truncated-hive", "10", "amd64", variant="truncated-hive"),
    PhonySpec("bad-linux", "10", "amd64", variant="linux"),
    PhonySpec("sysprepped", "10", "amd64", variant="sysprepped"),
)


# -- hives --------------------------------------------------------------------------------------

def _cell(payload: bytes) -> bytes:
    n = (len(payload) + 11) & ~7
    return struct.pack("<i", -n) + payload + b"\0" * (n - 4 - len(payload))


def make_empty_hive(root: bytes = b"ROOT") -> bytes:
    """A valid regf file holding one empty root key (spec §5; hivex opens, edits and commits it)."""
    sid = struct.pack("<BB6sII", 1, 2, b"\0" * 5 + b"\x05", 32, 544)          # S-1-5-32-544
    sd = struct.pack("<BBHIIII", 1, 0, 0x8000, 20, 20 + len(sid), 0, 0) + sid + sid
    sk_off = 0x20 + len(_cell(b"\0" * (0x4C + len(root))))
    nk = struct.pack("<2sHQ15IHH", b"nk", 0x2C, 0, 0, 0xFFFFFFFF, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0,
                     0xFFFFFFFF, sk_off, 0xFFFFFFFF, 0, 0, 0, 0, 0, len(root), 0) + root
    sk = struct.pack("<2sHIIII", b"sk", 0, sk_off, sk_off, 1, len(sd)) + sd
    cells = _cell(nk) + _cell(sk)
    free = 0x1000 - 0x20 - len(cells)
    hbin = struct.pack("<4sII", b"hbin", 0, 0x1000) + b"\0" * 20 + cells + struct.pack("<i", free) + b"\0" * (free - 4)
    hdr = bytearray(0x1000)
    struct.pack_into("<4sIIQIIIIIII", hdr, 0, b"regf", 1, 1, 0, 1, 3, 0, 1, 0x20, 0x1000, 1)
    cs = 0
    for i in range(0, 0x1FC, 4):
        cs ^= struct.unpack_from("<I", hdr, i)[0]
    struct.pack_into("<I", hdr, 0x1FC, cs)
    return bytes(hdr) + hbin


def _sz(s: str) -> tuple[int, bytes]:
    return 1, s.encode("utf-16-le") + b"\0\0"


def _esz(s: str) -> tuple[int, bytes]:
    return 2, s.encode("utf-16-le") + b"\0\0"


def _dw(n: int) -> tuple[int, bytes]:
    return 4, struct.pack("<I", n)


def _bin(b: bytes) -> tuple[int, bytes]:
    return 3, b


def fill_hive(path: Path, keys: dict[str, dict[str, tuple[int, bytes]]]) -> None:
    """Create every key (backslash paths, parents first) with its values, with python3-hivex."""
    import hivex
    h = hivex.Hivex(str(path), write=True)
    for key, values in keys.items():
        node = h.root()
        for part in key.split("\\"):
            child = h.node_get_child(node, part)
            node = child if child else h.node_add_child(node, part)
        for name, (t, data) in values.items():
            h.node_set_value(node, {"key": name, "t": t, "value": data})
    h.commit(None)


def system_keys(spec: PhonySpec, mounted_c: bytes) -> dict:
    ccs = f"ControlSet{spec.control_set:03d}"
    keys = {
        "Select": {"Current": _dw(spec.control_set), "Default": _dw(spec.control_set),
                   "LastKnownGood": _dw(spec.control_set), "Failed": _dw(0)},
        "MountedDevices": {"\\DosDevices\\C:": _bin(mounted_c)},
        "Setup": {"CmdLine": _sz(""), "SetupType": _dw(0), "SystemSetupInProgress": _dw(0)},
    }
    sets = [ccs] if spec.control_set == 1 else ["ControlSet001", ccs]
    for cs in sets:
        keys.update({
            f"{cs}\\Control\\ComputerName\\ComputerName": {"ComputerName": _sz(spec.name.upper()[:15])},
            f"{cs}\\Control\\CrashControl": {"AutoReboot": _dw(1), "CrashDumpEnabled": _dw(7)},
            f"{cs}\\Control\\Session Manager\\Power": {"HiberbootEnabled": _dw(0 if spec.release == "7" else 1)},
            f"{cs}\\Control\\Class\\{SCSI_CLASS}": {"Class": _sz("SCSIAdapter")},
            f"{cs}\\Services\\intelide": {"Start": _dw(0), "Type": _dw(1), "ErrorControl": _dw(3),
                                          "ImagePath": _esz("System32\\drivers\\intelide.sys")},
            f"{cs}\\Services\\Tcpip\\Parameters": {"Hostname": _sz(spec.name)},
        })
        if not spec.driver_database:
            keys[f"{cs}\\Control\\CriticalDeviceDatabase\\pci#ven_8086&dev_7010"] = {
                "Service": _sz("intelide"), "ClassGUID": _sz("{4D36E96A-E325-11CE-BFC1-08002BE10318}")}
    if spec.driver_database:
        keys.update({"DriverDatabase": {}, "DriverDatabase\\DriverInfFiles": {},
                     "DriverDatabase\\DeviceIds": {}, "DriverDatabase\\DriverPackages": {}})
    if spec.variant == "sysprepped":
        keys["Setup"] = {"CmdLine": _sz("oobe\\windeploy.exe"), "SetupType": _dw(1),
                         "SystemSetupInProgress": _dw(1)}
    return keys


def software_keys(spec: PhonySpec) -> dict:
    cv, majmin, build, product, itype = OS_FACTS[spec.release]
    nt = {"ProductName": _sz(product), "CurrentVersion": _sz(cv), "CurrentBuildNumber": _sz(str(build)),
          "CurrentBuild": _sz(str(build)), "InstallationType": _sz(itype),
          "EditionID": _sz(product.split()[-1]), "SystemRoot": _sz("C:\\Windows"),
          "PathName": _sz("C:\\Windows")}
    if majmin:
        nt["CurrentMajorVersionNumber"] = _dw(majmin[0])
        nt["CurrentMinorVersionNumber"] = _dw(majmin[1])
    pf = "C:\\Program Files"
    return {
        "Microsoft\\Windows NT\\CurrentVersion": nt,
        "Microsoft\\Windows\\CurrentVersion": {"DevicePath": _esz("%SystemRoot%\\inf"),
                                               "ProgramFilesDir": _sz(pf),
                                               "CommonFilesDir": _sz(pf + "\\Common Files")},
        "Microsoft\\Windows\\CurrentVersion\\Group Policy\\History": {},
    }


def make_hive(path: Path, keys: dict) -> Path:
    path.write_bytes(make_empty_hive())
    fill_hive(path, keys)
    return path


# -- cmd.exe ------------------------------------------------------------------------------------

def stub_cmd_exe(arch: str) -> bytes:
    """A PE header and nothing else: `file` says "PE32 executable (console) Intel 80386" or
    "PE32+ executable (console) x86-64"."""
    wide = archmod.normalise(arch) == archmod.X86_64
    machine, magic, opt_size = (0x8664, 0x20B, 0xF0) if wide else (0x14C, 0x10B, 0xE0)
    mz = bytearray(0x80)
    mz[0:2] = b"MZ"
    struct.pack_into("<I", mz, 0x3C, 0x80)
    coff = struct.pack("<4sHHIIIHH", b"PE\0\0", machine, 0, 0, 0, 0, opt_size, 0x0102 if not wide else 0x0022)
    opt = bytearray(opt_size)
    struct.pack_into("<H", opt, 0, magic)
    struct.pack_into("<H", opt, 68, 3)                       # IMAGE_SUBSYSTEM_WINDOWS_CUI
    data = bytes(mz) + coff + bytes(opt)
    return data + b"\0" * (1024 - len(data))


# -- disks --------------------------------------------------------------------------------------

def _new_qcow2(path: Path) -> None:
    run([require("qemu-img"), "create", "-q", "-f", "qcow2", str(path), str(DISK_SIZE)],
        what="qemu-img create (phony disk)", timeout=60)


def _layout(g, dev: str, spec: PhonySpec) -> tuple[str, bytes]:
    """Partition and format one disk; returns (NTFS device, MountedDevices value for C:)."""
    if spec.firmware == "uefi":
        g.part_init(dev, "gpt")
        g.part_add(dev, "p", 2048, 67583)
        g.part_add(dev, "p", 67584, -34)
        g.part_set_gpt_type(dev, 1, ESP_TYPE)
        g.part_set_gpt_type(dev, 2, BASIC_DATA)
        g.mkfs("vfat", f"{dev}1")
        ntfs = f"{dev}2"
        guid = g.part_get_gpt_guid(dev, 2)
        import uuid
        mounted = b"DMIO:ID:" + uuid.UUID(guid).bytes_le
    else:
        g.part_init(dev, "mbr")
        g.part_add(dev, "p", 2048, -1)
        g.part_set_bootable(dev, 1, True)
        g.pwrite_device(dev, DISK_SIGNATURE, 0x1B8)
        ntfs = f"{dev}1"
        mounted = DISK_SIGNATURE + struct.pack("<Q", NTFS_START)
    return ntfs, mounted


def make_phony_disks(specs: list[PhonySpec] | tuple[PhonySpec, ...], outdir: Path,
                     accel: accelmod.Accel | None = None) -> dict[str, Path]:
    """Make every phony disk of ``specs`` in ``outdir`` (``<name>.qcow2``) in one launch."""
    accel = accel or accelmod.choose(None)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {s.name: outdir / f"{s.name}.qcow2" for s in specs}
    for p in paths.values():
        _new_qcow2(p)
    with tempfile.TemporaryDirectory() as tmp, \
            session([Drive(p, "qcow2", readonly=False) for p in paths.values()], accel,
                    what="phony Windows disks") as g:
        devs = g.list_devices()
        for i, (spec, dev) in enumerate(zip(specs, devs)):
            if spec.variant == "linux":
                g.part_disk(dev, "mbr")
                g.mkfs("ext4", f"{dev}1")
                g.mount(f"{dev}1", "/")
                g.mkdir_p("/etc")
                g.write("/etc/os-release", b"ID=debian\nVERSION_ID=12\n")
                g.umount_all()
                continue
            ntfs, mounted = _layout(g, dev, spec)
            g.mkfs("ntfs", ntfs)
            system = make_hive(Path(tmp) / f"SYSTEM{i}", system_keys(spec, mounted))
            software = make_hive(Path(tmp) / f"SOFTWARE{i}", software_keys(spec))
            if spec.variant == "truncated-hive":
                system.write_bytes(system.read_bytes()[:8192])
            g.mount(ntfs, "/")
            for d in ("/Windows/System32/config", "/Windows/System32/drivers", "/Windows/Temp",
                      "/Windows/inf", "/Program Files", "/ProgramData"):
                g.mkdir_p(d)
            g.upload(str(system), "/Windows/System32/config/SYSTEM")
            g.upload(str(software), "/Windows/System32/config/SOFTWARE")
            g.write("/Windows/System32/cmd.exe", stub_cmd_exe(spec.arch))
            g.write("/Windows/System32/drivers/intelide.sys", b"phony intelide.sys\n")
            g.write("/bootmgr", b"phony bootmgr\n")
            if spec.variant == "hibernated":
                g.write("/hiberfil.sys", b"HIBR" + b"\0" * 8188)
            g.umount_all()
            if spec.variant == "dynamic":
                if spec.firmware == "uefi":
                    g.part_set_gpt_type(dev, 2, LDM_DATA)
                else:
                    g.part_set_mbr_id(dev, 1, 0x42)
    return paths


def make_phony_windows(path: Path, version: str, arch: str, firmware: str = "bios",
                       variant: str = "", accel: accelmod.Accel | None = None) -> Path:
    """One phony Windows disk at ``path`` (qcow2). ``version`` is a release word ("10", "11",
    "server-2022", …). Making several? ``make_phony_disks`` does them in one launch."""
    spec = PhonySpec(Path(path).stem, version, arch, firmware, variant)
    with tempfile.TemporaryDirectory(dir=Path(path).parent) as tmp:
        made = make_phony_disks([spec], Path(tmp), accel)[spec.name]
        made.rename(path)
    return Path(path)


def digest() -> str:
    """This generator's own source digest: the cache key of the disks it makes."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def phony_set(cache: Path, specs=STANDARD + BAD, accel: accelmod.Accel | None = None) -> dict[str, Path]:
    """The phony disks of ``specs``, made once per generator digest under ``cache``."""
    key = hashlib.sha256((digest() + "|" + repr(tuple(specs))).encode()).hexdigest()[:16]
    base = cache / f"phony-windows-{key}"
    if not (base / "complete").exists():
        work = cache / f".phony-windows-{key}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        make_phony_disks(specs, work, accel)
        (work / "complete").write_text("ok\n")
        shutil.rmtree(base, ignore_errors=True)
        work.rename(base)
    return {s.name: base / f"{s.name}.qcow2" for s in specs}


def copy_disk(src: Path, dst: Path) -> Path:
    """A private, self-contained copy a test may write to."""
    shutil.copyfile(src, dst)
    return dst
