"""Offline virtio driver injection into a Windows disk: one module for the Windows ``drivers``
stage, the converters and ``ironforge inject-drivers``.

One libguestfs launch per injection. Everything is read and planned on a read-only mount first
(the refusals in builder.windows.detect, the version from the hives, the arch from cmd.exe's PE
header, the driver selection, the registry edits applied to local copies of the hives with
python3-hivex, each file compared with what is there). Only when something differs, and not in
a dry run, is the volume mounted read-write and written: driver files first, hives last, each
hive uploaded under a temporary name and renamed over the old one. A second injection finds
nothing to change and does not even mount the volume read-write.

What is written (spec §2): the selected drivers into ``Windows\\Drivers\\VirtIO`` (lowercase
basenames), ``viostor.sys``/``vioscsi.sys`` into ``System32\\drivers``; SYSTEM: Services for both
block drivers, CriticalDeviceDatabase (before Windows 8) or DriverDatabase (8+), CrashControl
AutoReboot=0, the first-boot Setup command (builder.windows.firstboot); SOFTWARE: DevicePath.
Every registry change goes into a .reg export and the JSON report.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import GuestfsError, VirtioWinError, WindowsImageError
from builder.host.accel import Accel
from builder.host.guestfs_session import Drive, session
from builder.windows import detect, driver_registry, firstboot, pe, regfile
from builder.windows import versions as V
from builder.windows.hive_edits import Change, Hive, KeyEdit
from builder.windows.virtio_win import DriverFile, VirtioWinSource, select

log = logging.getLogger("ironforge.windows.inject")

CMD_EXE_BYTES = pe.HEADER_BYTES


@dataclass(frozen=True)
class InjectOptions:
    dry_run: bool = False
    block_drivers: tuple[str, ...] = driver_registry.BLOCK_DRIVERS
    firstboot_infs: tuple[str, ...] = firstboot.ALLOW_LIST
    retry_cap: int = firstboot.RETRY_CAP
    # extra SYSTEM/SOFTWARE edits from a caller (the converters disable foreign PV drivers)
    extra_edits: tuple[KeyEdit, ...] = ()


@dataclass
class GuestFacts:
    device: str
    systemroot: str
    partition_table: str | None
    control_set: str
    product_name: str | None
    installation_type: str | None
    major: int
    minor: int
    build: int | None
    arch: str
    version: V.WindowsVersion

    def to_dict(self) -> dict:
        return {"device": self.device, "systemroot": self.systemroot,
                "partition_table": self.partition_table, "control_set": self.control_set,
                "product_name": self.product_name, "installation_type": self.installation_type,
                "nt": f"{self.major}.{self.minor}", "build": self.build, "arch": self.arch,
                "arch_word": V.word(self.arch), **{f"version_{k}": v for k, v in self.version.to_dict().items()}}


@dataclass
class FileAction:
    path: str              # guest path as written, e.g. /Windows/Drivers/VirtIO/viostor.sys
    source: str            # where the bytes came from (virtio-win path, or "ironforge")
    sha256: str
    size: int
    action: str            # "add", "replace" or "same"
    data: bytes = field(repr=False, default=b"")

    def to_dict(self) -> dict:
        return {"path": self.path, "source": self.source, "sha256": self.sha256, "size": self.size,
                "action": self.action}


@dataclass
class InjectResult:
    guest: GuestFacts
    virtio_win: dict
    drivers: list[str]
    block_drivers: list[str]
    database: str
    files: list[FileAction]
    registry: list[Change]
    firstboot: dict
    warnings: list[str]
    dry_run: bool
    written: bool
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.registry) or any(f.action != "same" for f in self.files)

    def reg_text(self) -> str:
        return regfile.export(self.registry)

    def to_dict(self) -> dict:
        return {"guest": self.guest.to_dict(), "virtio_win": self.virtio_win, "drivers": self.drivers,
                "block_drivers": self.block_drivers, "database": self.database,
                "files": [f.to_dict() for f in self.files],
                "registry": [c.to_dict() for c in self.registry],
                "firstboot": self.firstboot, "warnings": self.warnings, "dry_run": self.dry_run,
                "changed": self.changed, "written": self.written, "seconds": round(self.seconds, 1)}


def _int(s) -> int | None:
    try:
        return int(str(s).strip())
    except (TypeError, ValueError):
        return None


def read_facts(g, vol: detect.SystemVolume, system: Hive, software: Hive, cmd_header: bytes) -> GuestFacts:
    current = system.dword(("Select",), "Current")
    if not current or current > 999:
        raise WindowsImageError("the SYSTEM hive has no usable Select\\Current value",
                                hint="not a Windows system hive, or a damaged one; nothing was written")
    ccs = f"ControlSet{current:03d}"
    if system.node((ccs,)) is None:
        raise WindowsImageError(f"the SYSTEM hive names {ccs} as current but has no such key",
                                hint="a damaged SYSTEM hive; nothing was written")
    cv = ("Microsoft", "Windows NT", "CurrentVersion")
    if software.node(cv) is None:
        raise WindowsImageError("the SOFTWARE hive has no Microsoft\\Windows NT\\CurrentVersion key",
                                hint="not a Windows SOFTWARE hive, or a damaged one; nothing was written")
    major = software.dword(cv, "CurrentMajorVersionNumber")
    minor = software.dword(cv, "CurrentMinorVersionNumber")
    if major is None:
        text = software.string(cv, "CurrentVersion") or ""
        parts = text.split(".")
        major, minor = _int(parts[0]) if parts else None, _int(parts[1]) if len(parts) > 1 else None
    if major is None or minor is None:
        raise WindowsImageError("the SOFTWARE hive gives no Windows version (CurrentMajorVersionNumber "
                                "or CurrentVersion)", hint="nothing was written")
    build = _int(software.string(cv, "CurrentBuildNumber") or software.string(cv, "CurrentBuild"))
    product = software.string(cv, "ProductName")
    itype = software.string(cv, "InstallationType")
    version = V.identify(major, minor, build, itype, product)
    arch = pe.machine_arch(cmd_header, what=f"{vol.systemroot}/System32/cmd.exe")
    if not version.supports(arch):
        raise WindowsImageError(f"{version.name} on {V.word(arch)}: Microsoft does not ship this "
                                "combination, so the hives or cmd.exe are inconsistent",
                                hint="nothing was written")
    return GuestFacts(vol.device, vol.systemroot, vol.partition_table, ccs, product, itype, major,
                      minor, build, arch, version)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plan_file(g, path: str, data: bytes, source: str) -> FileAction:
    real = detect.find_path(g, path)
    action = "add"
    if real and g.is_file(real):
        path = real
        same = g.filesize(real) == len(data) and g.checksum("sha256", real) == _sha(data)
        action = "same" if same else "replace"
    return FileAction(path, source, _sha(data), len(data), action, data)


def _group_policy_warning(software: Hive) -> str | None:
    hist = ("Microsoft", "Windows", "CurrentVersion", "Group Policy", "History")
    guids = [c for c in software.children(hist) if c.startswith("{")]
    if guids:
        return (f"Group Policy objects have been applied to this guest ({len(guids)} in Group Policy\\"
                "History); a device-installation policy can still stop the virtio disk from booting "
                "(0x7B, KB 2773300). Check Policies\\Microsoft\\Windows\\DeviceInstall\\Restrictions.")
    return None


def inject_session(g, vw: VirtioWinSource, workdir: Path, options: InjectOptions = InjectOptions()) -> InjectResult:
    """Inject into the disk(s) of an open session (drives added, nothing mounted).

    For callers that already hold a session (the converters); see ``inject_image`` otherwise."""
    t0 = time.monotonic()
    vol = detect.find_system_volume(g)              # mounted read-only at / from here on
    sr = vol.systemroot
    config = detect.find_path(g, sr + "/System32/config")
    hive_paths = {}
    for name in ("SYSTEM", "SOFTWARE"):
        p = detect.find_path(g, f"{config}/{name}")
        if not p or not g.is_file(p):
            raise WindowsImageError(f"no {name} hive at {config}/{name}",
                                    hint="not a Windows system volume; nothing was written")
        hive_paths[name] = p
    cmd = detect.find_path(g, sr + "/System32/cmd.exe")
    if not cmd or not g.is_file(cmd):
        raise WindowsImageError(f"no {sr}/System32/cmd.exe: cannot tell 32-bit from 64-bit Windows",
                                hint="not a Windows system volume; nothing was written")
    cmd_header = bytes(g.pread(cmd, min(CMD_EXE_BYTES, g.filesize(cmd)), 0))

    hivedir = workdir / "hives"
    hivedir.mkdir(parents=True, exist_ok=True)
    hives: dict[str, Hive] = {}
    for name, p in hive_paths.items():
        local = hivedir / name
        detect.download_bounded(g, p, local)
        shutil.copyfile(local, hivedir / f"{name}.before")
        hives[name] = Hive(local, name, write=True)
    system, software = hives["SYSTEM"], hives["SOFTWARE"]
    facts = read_facts(g, vol, system, software, cmd_header)
    version, arch, ccs = facts.version, facts.arch, facts.control_set
    warnings: list[str] = []
    log.info("inject: %s (%s, build %s, %s) on %s", version.name, facts.product_name, facts.build,
             V.word(arch), vol.device)

    files = select(vw, version, arch)             # VirtioWinError when there is none
    by_target = {f.target: f for f in files}
    block = [d for d in options.block_drivers if f"{d}.sys" in by_target]
    if not block:
        raise VirtioWinError(
            f"virtio-win source {vw.path} has drivers for {version.name} on {V.word(arch)} but no "
            f"boot storage driver ({', '.join(d + '.sys' for d in options.block_drivers)})",
            hint="use a complete virtio-win tree or ISO; nothing was written")
    for d in options.block_drivers:
        if d not in block:
            warnings.append(f"no {d}.sys for {version.name} {V.word(arch)}: only {', '.join(block)} registered")

    # -- files -------------------------------------------------------------------------------
    actions: list[FileAction] = []
    virtio_dir = detect.find_path(g, sr + "/Drivers/VirtIO") or f"{sr}/Drivers/VirtIO"
    for f in files:
        actions.append(_plan_file(g, f"{virtio_dir}/{f.target}", f.read(), f.source_path))
    drivers_dir = detect.find_path(g, sr + "/System32/drivers") or f"{sr}/System32/drivers"
    for d in block:
        f: DriverFile = by_target[f"{d}.sys"]
        actions.append(_plan_file(g, f"{drivers_dir}/{d}.sys", f.read(), f.source_path))

    # -- registry ----------------------------------------------------------------------------
    edits: list[KeyEdit] = driver_registry.storage_edits(ccs, block, V.word(arch), version.driver_database)
    edits.append(driver_registry.crash_control(ccs))
    edits.append(driver_registry.device_path(
        software.value(("Microsoft", "Windows", "CurrentVersion"), "DevicePath")))
    infs = [i for i in options.firstboot_infs if i in by_target]
    fb = {"mechanism": firstboot.MECHANISM, "infs": infs, "retry_cap": options.retry_cap,
          "script": f"{sr}/Setup/ironforge/{firstboot.SCRIPT}", "installed": False}
    cmdline = system.string(("Setup",), "CmdLine")
    setup_type = system.dword(("Setup",), "SetupType")
    if not infs:
        fb["reason"] = "no allow-listed INF in the selection"
    elif firstboot.setup_pending(cmdline, setup_type):
        fb["reason"] = (f"Windows Setup is already queued (SetupType={setup_type}, CmdLine={cmdline!r}, "
                        "e.g. a sysprepped image); left alone, Plug and Play finds the drivers through DevicePath")
        warnings.append("first-boot driver installation not set up: " + fb["reason"])
    else:
        setup_dir = detect.find_path(g, sr + "/Setup") or f"{sr}/Setup"
        actions.append(_plan_file(g, f"{setup_dir}/ironforge/{firstboot.SCRIPT}",
                                  firstboot.script(infs, options.retry_cap), "ironforge"))
        edits.append(firstboot.setup_edit())
        fb["installed"] = True
    edits.extend(options.extra_edits)
    gp = _group_policy_warning(software)
    if gp:
        warnings.append(gp)

    changes = system.apply(edits) + software.apply(edits)
    result = InjectResult(
        guest=facts, virtio_win={"path": str(vw.path), "kind": vw.kind},
        drivers=sorted({f.driver for f in files}), block_drivers=block,
        database="DriverDatabase" if version.driver_database else "CriticalDeviceDatabase",
        files=actions, registry=changes, firstboot=fb, warnings=warnings,
        dry_run=options.dry_run, written=False)
    if not result.changed or options.dry_run:
        g.umount_all()
        result.seconds = time.monotonic() - t0
        return result

    # -- write: files first, hives last (each replaced by rename) ----------------------------
    g.umount_all()
    try:
        g.mount(vol.device, "/")
    except GuestfsError as exc:      # ntfs-3g refused read-write: nothing was written
        raise WindowsImageError(f"{vol.device}: cannot mount the Windows volume read-write: {exc}",
                                hint=detect.HINT_HIBERNATED) from None
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for i, a in enumerate(actions):
            if a.action == "same":
                continue
            parent = a.path.rsplit("/", 1)[0]
            g.mkdir_p(parent)
            local = Path(tmp) / f"f{i}"
            local.write_bytes(a.data)
            g.upload(str(local), a.path)
        for name, h in hives.items():
            if not any(c.hive == name for c in changes):
                continue
            h.commit()
            tmpname = hive_paths[name] + ".ironforge-new"
            g.upload(str(h.path), tmpname)
            g.mv(tmpname, hive_paths[name])
    g.sync()
    g.umount_all()
    result.written = True
    result.seconds = time.monotonic() - t0
    return result


def inject_image(image: Path, fmt: str, virtio_win: Path, accel: Accel, workdir: Path,
                 options: InjectOptions = InjectOptions()) -> InjectResult:
    """One launch: open ``image`` (read-only for a dry run), inject, close."""
    with VirtioWinSource(virtio_win) as vw:          # an unreadable source fails before the launch
        with session([Drive(Path(image), fmt, readonly=options.dry_run)], accel,
                     what="inject-drivers") as g:
            return inject_session(g, vw, workdir, options)


def write_record(result: InjectResult, outdir: Path, stem: str = "inject") -> dict[str, Path]:
    """The .reg export and the JSON report beside each other; returns their paths."""
    import json
    outdir.mkdir(parents=True, exist_ok=True)
    reg = outdir / f"{stem}.reg"
    rep = outdir / f"{stem}.json"
    reg.write_text(result.reg_text(), encoding="utf-8", newline="")
    rep.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return {"reg": reg, "report": rep}
