"""Prove an image boots, without touching it; and do it for many images at once.

One verification: probe the (untrusted) image → qcow2 overlay backed by it → probe injected into the
overlay (one libguestfs launch, which also tells the arch of a bare image) → boot the overlay under
QEMU with a per-boot nonce in fw_cfg and SMBIOS → watch the serial log → checks on the ready marker.
On failure: a screenshot (PNG) and the serial log next to the result, and the last serial lines in it.
The overlay is deleted afterwards; the image is only ever QEMU's read-only backing file.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import threading
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import arch as archmod
from builder import qemu_img
from builder.errors import BootFailure, IronforgeError, UsageError, VerifyError
from builder.host.accel import Accel, choose
from builder.image.probe import DEFAULT_MAX_VIRTUAL_SIZE, probe
from builder.runner import inject_host
from builder.runner.checks import DEFAULT_CHECKS, WINDOWS_CHECKS, CheckResult, run_checks
from builder.runner.inject_host import OwnRoot
from builder.runner.machine import Disk, MachineSpec, QemuMachine
from builder.runner.waiter import READY, SerialFollower, WatchConfig, watch

log = logging.getLogger("ironforge.verify")

PASSED, FAILED, ERROR = "passed", "failed", "error"


@dataclass(frozen=True)
class VerifyTarget:
    image: Path
    name: str | None = None
    arch: str | None = None           # expected arch (recipe); None: what libguestfs inspection finds
    firmware: str = "auto"            # bios | uefi | auto (guess from the disk)
    memory_mb: int = 1024
    cpus: int = 1
    timeout: float = 900.0
    stall: float = 300.0
    checks: tuple[str, ...] = DEFAULT_CHECKS
    # Direct kernel boot (the guest brings its own probe; nothing is injected):
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    inject: bool = True
    max_virtual_size: int = DEFAULT_MAX_VIRTUAL_SIZE
    # Windows guests (found by inspection when injecting):
    disk_bus: str = "virtio-blk"      # the bus the image's drivers are for: virtio-blk | virtio-scsi
    build: str | None = None          # expected CurrentBuildNumber; None: what the disk's hive says
    via: str = "qemu"                 # "libvirt": boot our domain XML through a real libvirt (runner.libvirt_boot)
    mac: str | None = None            # the NIC's MAC: the one the exported machine description gives
    # The root filesystem of an image this build made (its disk stage's record): the probe then
    # goes in from the host (runner.inject_host), not through a libguestfs launch
    own_root: OwnRoot | None = None
    # Provenance for reports, when the caller knows it (a build's export stage, a manifest):
    image_sha256: str | None = None   # None: hashed here
    cache_keys: dict[str, str] = field(default_factory=dict)   # stage -> cache key

    @property
    def label(self) -> str:
        return self.name or Path(self.image).name


@dataclass
class VerifyResult:
    image: str
    name: str
    arch: str | None
    accel: str
    firmware: str | None
    status: str                       # passed | failed | error
    reason: str                       # ready | panic | stall | timeout | exited | checks | error
    message: str
    hint: str | None = None
    boot_seconds: float | None = None    # QEMU start to verdict (wall clock)
    guest_uptime: float | None = None    # the guest's own clock at the marker (kernel start to marker)
    inject_seconds: float | None = None
    inject_via: str | None = None        # "host" (this build's own image) | "libguestfs" | None (not injected)
    total_seconds: float | None = None
    checks: list[CheckResult] = field(default_factory=list)
    marker: dict[str, str] = field(default_factory=dict)
    serial_log: str | None = None
    screenshot: str | None = None
    serial_tail: list[str] = field(default_factory=list)
    image_format: str | None = None
    image_sha256: str | None = None
    cache_keys: dict[str, str] = field(default_factory=dict)
    qemu_command: list[str] = field(default_factory=list)   # exactly what ran (QemuMachine.command)
    timeline: dict[str, float | None] = field(default_factory=dict)   # builder.runner.timeline

    @property
    def ok(self) -> bool:
        return self.status == PASSED

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VerifyResult":
        """Back from ``to_dict()`` (a manifest's or verify.json's ``verification``); unknown keys dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["checks"] = [CheckResult(**c) for c in d.get("checks") or []]
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["checks"] = [c.to_dict() for c in self.checks]
        return d

    def failure(self) -> BootFailure:
        return BootFailure(reason=self.reason, serial_tail=list(self.serial_tail),
                           serial_log=Path(self.serial_log) if self.serial_log else None,
                           screenshot=Path(self.screenshot) if self.screenshot else None)

    def raise_for_status(self) -> "VerifyResult":
        """VerifyError (with the serial tail quoted) unless the image passed."""
        if self.ok:
            return self
        lines = "\n".join(f"    {line}" for line in self.serial_tail[-15:])
        where = [f"serial log: {self.serial_log}"] if self.serial_log else []
        if self.screenshot:
            where.append(f"screenshot: {self.screenshot}")
        text = f"{self.name}: {self.message}"
        if lines:
            text += f"\n  last serial lines:\n{lines}"
        if where:
            text += "\n  " + "; ".join(where)
        raise VerifyError(text, hint=self.hint, failure=self.failure())


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _settle_seconds(stall: float) -> int:
    # the probe waits for systemd silently; it must give up before the stall detector fires
    return int(max(5, min(240, stall * 0.8)))


def _inject_on_host(target: VerifyTarget, overlay: Path, work: Path) -> str | None:
    """"host" when the probe went into the overlay from the host; None (and why, at -v) when
    that route does not apply here and libguestfs must do it."""
    try:
        inject_host.inject_probe(overlay, target.own_root, work, settle_seconds=_settle_seconds(target.stall),
                                 what=f"verify {target.label}")
    except inject_host.HostInjectRefused as exc:
        log.info("verify %s: the probe goes in through libguestfs (%s)", target.label, exc.message)
        return None
    log.info("verify %s: boot probe written into a throw-away overlay from the host", target.label)
    return "host"


def verify_image(target: VerifyTarget, out_dir: Path, *, accel: Accel | None = None,
                 interval: float = 0.05, cancel: threading.Event | None = None) -> VerifyResult:
    """Verify one image; evidence goes into ``out_dir``. Boot failures are results, not exceptions;
    usage, unsafe-image and environment problems raise."""
    accel = accel or choose()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    info = probe(target.image, max_virtual_size=target.max_virtual_size)   # before anything opens it
    image = info.path   # resolved by probe: a protocol-like name (json:, nbd:) never reaches QEMU
    serial = out_dir / "serial.log"
    screenshot = out_dir / "screenshot.png"
    for stale in (serial, screenshot):
        stale.unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".verify-{os.getpid()}-", dir=out_dir))  # pid: see cache/sweep.py
    expected_arch = archmod.normalise(target.arch) if target.arch else None
    firmware = target.firmware
    inject_seconds, inject_via = None, None
    os_type, checks, expected_build = "linux", list(target.checks), target.build
    try:
        overlay = work / "overlay.qcow2"
        qemu_img.overlay(image, overlay, f"verify {target.label}: overlay", backing_format=info.format)
        t0 = time.monotonic()
        if target.inject and target.own_root is not None and target.arch and firmware != "auto":
            inject_via = _inject_on_host(target, overlay, work)
            inject_seconds = time.monotonic() - t0 if inject_via else None
        if target.inject and inject_via is None:
            from builder.runner.inject import inject_probe

            log.info("verify %s: injecting the boot probe into a throw-away overlay", target.label)
            facts = inject_probe(overlay, accel, settle_seconds=_settle_seconds(target.stall),
                                 what=f"verify {target.label}")
            inject_seconds, inject_via = time.monotonic() - t0, "libguestfs"
            found = archmod.normalise(facts.arch) if facts.arch in archmod.ALIASES else None
            expected_arch = expected_arch or found
            if firmware == "auto":
                firmware = facts.firmware
            os_type = facts.os_type
            if os_type == "windows":
                expected_build = expected_build or facts.build
                if tuple(checks) == DEFAULT_CHECKS:      # nobody chose: the Windows checks
                    checks = list(WINDOWS_CHECKS)
                wrong = [c for c in checks if c not in WINDOWS_CHECKS]
                if wrong:
                    raise UsageError(f"{target.label}: check(s) {', '.join(wrong)} do not apply to a Windows "
                                     f"guest (Windows checks: {', '.join(WINDOWS_CHECKS)})")
        if firmware == "auto":
            firmware = "bios"
        if not expected_arch:
            raise UsageError(f"{target.label}: unknown architecture; say which (x86_64 or i686)")
        nonce = secrets.token_hex(8)
        if os_type == "windows":
            from builder.windows import machine as winmachine

            # Windows needs 2 GiB to boot comfortably; it may reboot once (driver installation at first
            # boot), and prints nothing on COM1 before the probe, so console silence is no stall
            wm = winmachine.WindowsMachine(arch=expected_arch, firmware=firmware, disk_bus=target.disk_bus,
                                           memory_mb=max(target.memory_mb, 2048), cpus=max(target.cpus, 2))
            spec = winmachine.spec(wm, accel, system_disk=overlay, serial_log=serial,
                                   fw_cfg={"nonce": nonce}, smbios_oem_strings=(f"ironforge.nonce={nonce}",),
                                   name=f"ironforge-verify-{_safe_name(target.label)}")
            stall = target.timeout
        else:
            spec = MachineSpec(arch=expected_arch, accel=accel, memory_mb=target.memory_mb, cpus=target.cpus,
                               firmware=firmware, disks=(Disk(overlay, "qcow2", "virtio"),), nic="virtio",
                               mac=target.mac,
                               kernel=target.kernel, initrd=target.initrd, append=target.append,
                               serial_log=serial, fw_cfg={"nonce": nonce},
                               smbios_oem_strings=(f"ironforge.nonce={nonce}",),
                               name=f"ironforge-verify-{_safe_name(target.label)}")
            stall = target.stall
        cfg = WatchConfig(nonce=nonce, timeout=target.timeout, stall=stall, kvm=accel.kvm)
        log.info("verify %s: booting %s %s guest under %s", target.label, expected_arch, firmware,
                 accel.mode.upper())
        if target.via == "libvirt":
            from builder.runner.libvirt_boot import boot as libvirt_boot

            outcome = libvirt_boot(spec, cfg, interval=interval,
                                   cancel=(lambda: cancel.is_set()) if cancel is not None else None)
            stderr, shot = "", None
            command: list[str] = []
        else:
            outcome, shot, stderr, command = _boot_qemu(spec, cfg, target, screenshot, interval, cancel)
        result = VerifyResult(
            image=str(target.image), name=target.label, arch=expected_arch, accel=accel.mode, firmware=firmware,
            status=PASSED, reason=outcome.status, message=outcome.message, hint=outcome.hint,
            boot_seconds=round(outcome.elapsed, 3), inject_seconds=round(inject_seconds, 3) if inject_seconds else None,
            inject_via=inject_via,
            serial_log=str(serial), screenshot=shot, serial_tail=outcome.tail[-30:], image_format=info.format,
            image_sha256=target.image_sha256 or _sha256(image), cache_keys=dict(target.cache_keys),
            qemu_command=command, timeline=dict(outcome.timeline))
        if outcome.status != READY:
            result.status = FAILED
            if stderr:
                result.message += f" (QEMU: {stderr.splitlines()[-1]})"
        else:
            marker = outcome.marker
            result.marker = dict(marker.fields)
            result.guest_uptime = marker.uptime
            result.checks = run_checks(marker, checks, expected_arch, expected_build=expected_build,
                                       disk_bus=target.disk_bus)
            bad = [c for c in result.checks if not c.ok]
            if bad:
                result.status, result.reason = FAILED, "checks"
                result.message = "booted, but " + "; ".join(f"{c.name}: {c.detail}" for c in bad)
                result.hint = "relax a check with --check -NAME (or verify.checks in the recipe) if it is expected"
            else:
                result.message = f"booted in {outcome.elapsed:.1f} s; " + ", ".join(c.name for c in result.checks) \
                    + (" passed" if result.checks else "no checks")
        result.total_seconds = round(time.monotonic() - t_start, 3)
        log.info("verify %s: %s (%s)", target.label, result.status.upper(), result.message)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _boot_qemu(spec, cfg, target, screenshot, interval, cancel):
    """The QemuMachine boot: the outcome, a screenshot of a failed boot, QEMU's stderr."""
    shot = None
    with QemuMachine(spec) as m:
        m.start()
        follower = SerialFollower(spec.serial_log)
        try:
            def poll_exit():
                if cancel is not None and cancel.is_set():
                    raise VerifyError(f"verify {target.label}: cancelled")  # the with-block kills QEMU
                return m.returncode

            outcome = watch(follower, cfg, poll_exit, interval=interval, start=m.started_at)
        finally:
            follower.close()
        if not outcome.ok and m.running():
            try:
                shot = str(m.screendump(screenshot))
            except Exception as exc:  # noqa: BLE001 - evidence is best effort; the verdict stands
                log.warning("verify %s: no screenshot: %s", target.label, exc)
        stderr = m.stderr_text() if not outcome.ok else ""
    return outcome, shot, stderr, list(m.command)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_fleet(targets: list[VerifyTarget], parallel: int = 2, timeout: float | None = None,
                 *, accel: Accel | None = None, out_dir: Path = Path("verify-results"),
                 interval: float = 0.05) -> list[VerifyResult]:
    """Verify many images with at most ``parallel`` guests at a time; results in ``targets`` order.

    ``timeout`` (if given) overrides each target's overall timeout. An image that cannot even be tried
    (unsafe, unknown arch…) yields an ``error`` result rather than stopping the others.
    """
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {parallel}")
    accel = accel or choose()
    out_dir = Path(out_dir)
    names: dict[str, int] = {}
    jobs = []
    for t in targets:
        base = _safe_name(t.label)
        n = names.get(base, 0)
        names[base] = n + 1
        sub = out_dir / (base if n == 0 else f"{base}-{n + 1}")
        if timeout is not None:
            t = dataclasses.replace(t, timeout=float(timeout))
        jobs.append((t, sub))

    cancel = threading.Event()

    def one(t: VerifyTarget, sub: Path) -> VerifyResult:
        if cancel.is_set():
            raise VerifyError("cancelled")
        try:
            return verify_image(t, sub, accel=accel, interval=interval, cancel=cancel)
        except IronforgeError as exc:
            return VerifyResult(image=str(t.image), name=t.label, arch=t.arch, accel=accel.mode,
                                firmware=None if t.firmware == "auto" else t.firmware, status=ERROR,
                                reason="error", message=exc.message, hint=exc.hint)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="verify")
    try:
        futures = [pool.submit(one, t, sub) for t, sub in jobs]
        return [f.result() for f in futures]
    except BaseException:
        # Ctrl-C (or any error here): tell every running verification to stop; each kills its QEMU
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
