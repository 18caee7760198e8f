"""Boot a verification guest through a real libvirt instead of QemuMachine (``verify --via libvirt``):
our own domain XML (builder.exports.libvirt_xml) defined and started by a private libvirt session
daemon, the serial console going to a file the usual boot watcher reads.

The daemon is private: libvirt's session mode, with HOME and XDG_RUNTIME_DIR in a fresh directory,
so nothing of the host's libvirt (system daemon, networks, other domains) is touched or needed;
virsh starts it (``libvirtd --timeout=120``: it leaves by itself if we are killed) and we stop it by
the pid in its own pid file. As root, libvirt maps ``qemu:///session`` to the system socket, so
the session runs as an unprivileged user (nobody) instead; that user cannot read an image in a
root-only directory, so there the disk is first flattened into the private directory (a copy; the
image is never written either way). Domain type ``qemu`` where KVM is unusable; networking is
user-mode (no libvirt network is defined).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable

from builder import qemu_img
from builder.errors import UsageError
from builder.exports import libvirt_xml
from builder.exports.machine import Machine
from builder.host import proc
from builder.host.tools import require
from builder.runner.machine import MachineSpec
from builder.runner.waiter import Outcome, SerialFollower, WatchConfig, watch

NOBODY = 65534
URI = "qemu:///session"
STATE_POLL = 1.0     # seconds between `virsh domstate` calls while the watcher reads the serial log


class _Session:
    def __init__(self, work: Path, uid: int | None):
        self.work, self.uid = work, uid
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin:/usr/sbin:/sbin"), "HOME": str(work),
                    "XDG_RUNTIME_DIR": str(work / "run"), "XDG_CONFIG_HOME": str(work / "config"),
                    "XDG_CACHE_HOME": str(work / "cache"), "LC_ALL": "C"}

    def virsh(self, *args: str, check: bool = True, timeout: float = 120.0):
        drop = ([require("setpriv"), f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
                if self.uid is not None else [])
        return proc.run([*drop, require("virsh"), "-c", URI, *args], what=f"virsh {args[0]}", timeout=timeout,
                        env=self.env, check=check)

    def stop_daemon(self) -> None:
        """The session daemon virsh started for us (only ours: its pid file is in our private dir)."""
        for name in ("libvirtd.pid", "virtqemud.pid"):
            pidfile = self.work / "run" / "libvirt" / name
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                if not proc.pid_alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)


def boot(spec: MachineSpec, cfg: WatchConfig, *, interval: float = 0.05,
         cancel: Callable[[], bool] | None = None) -> Outcome:
    """Boot ``spec`` (one disk, the serial log, fw_cfg/SMBIOS nonce) under libvirt; the watcher's outcome."""
    if spec.kernel or len(spec.disks) != 1 or spec.serial_log is None:
        raise UsageError("verify --via libvirt boots one disk image with its own boot loader "
                         "(no direct kernel boot, exactly one disk)")
    disk = spec.disks[0]
    uid = NOBODY if os.geteuid() == 0 else None
    work = Path(tempfile.mkdtemp(prefix="ironforge-libvirt-"))
    session = _Session(work, uid)
    name = f"ironforge-{os.getpid()}-{work.name[-8:]}"
    serial = work / "serial.log"
    try:
        (work / "run").mkdir(mode=0o700)
        if uid is not None:
            # the unprivileged session needs its own copy it can read and write
            disk_path = work / "disk.qcow2"
            qemu_img.convert(disk.path, disk_path, "qcow2", src_format=disk.format, what="verify via libvirt: disk")
            for p in (work, work / "run", disk_path):
                os.chown(p, uid, uid)
            disk_format = "qcow2"
        else:
            disk_path = work / "overlay.qcow2"
            qemu_img.overlay(disk.path, disk_path, "verify via libvirt: overlay", backing_format=disk.format)
            disk_format = "qcow2"
        m = Machine(name=name, vcpus=spec.cpus, memory_mib=spec.memory_mb, firmware=spec.firmware,
                    arch={"amd64": "x86_64", "i386": "i686"}.get(spec.arch, spec.arch), nics=1 if spec.nic else 0)
        xml = libvirt_xml.domain(m, disk_path, disk_format, domain_type="kvm" if spec.accel.kvm else "qemu",
                                 serial_log=serial, network=None, fw_cfg=spec.fw_cfg,
                                 smbios_oem_strings=spec.smbios_oem_strings)
        # a reboot ends the run, as QemuMachine's -no-reboot does
        xml = xml.replace("<on_reboot>restart</on_reboot>", "<on_reboot>destroy</on_reboot>")
        (work / "domain.xml").write_text(xml)
        os.chmod(work / "domain.xml", 0o644)
        session.virsh("define", str(work / "domain.xml"))
        session.virsh("start", name)
        start = time.monotonic()
        follower = SerialFollower(serial)
        last = [0.0]

        def poll_exit():
            if cancel is not None and cancel():
                raise UsageError("verify via libvirt: cancelled")
            now = time.monotonic()
            if now - last[0] < STATE_POLL:
                return None
            last[0] = now
            state = session.virsh("domstate", name, check=False).stdout.strip()
            return 0 if state in ("shut off", "crashed") else None

        try:
            outcome = watch(follower, cfg, poll_exit, interval=interval, start=start)
        finally:
            follower.close()
        if spec.serial_log is not None and serial.exists():
            shutil.copyfile(serial, spec.serial_log)
        return outcome
    finally:
        try:
            session.virsh("destroy", name, check=False)
            session.virsh("undefine", name, "--nvram", check=False)
        finally:
            session.stop_daemon()
            shutil.rmtree(work, ignore_errors=True)
