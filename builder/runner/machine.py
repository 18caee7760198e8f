"""A QEMU guest: a spec of facts, the one command builder, and a process wrapper with QMP control.

``build_command`` is the only place in ironforge that spells QEMU flags. Everything else describes a
machine with ``MachineSpec`` (arch, accel, firmware, disks, NIC, serial logs…) and lets this module
turn it into a command line.

``QemuMachine`` launches the command, talks QMP through the ``qemu.qmp`` library (asyncio, driven from a
private event-loop thread so callers stay synchronous and any thread may call it), and guarantees the
QEMU process never outlives it: ``__exit__`` kills it (also on exceptions and Ctrl-C), and the child
asks the kernel to SIGKILL it should the Python process die without cleaning up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import arch as archmod
from builder.errors import BuildError, MissingEnvironment, UsageError
from builder.host.accel import Accel
from builder.host import proc as hostproc
from builder.host import tools
from builder.runner.serialcap import DEFAULT_CAP as SERIAL_LOG_CAP, SerialLog

log = logging.getLogger("ironforge.runner")

BUSES = ("virtio", "scsi", "sata", "ide")
NICS = ("virtio", "e1000")
FIRMWARES = ("bios", "uefi")

# OVMF from Debian's ``ovmf`` package: (code, vars) pairs, best first.
OVMF_PAIRS = (
    (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    (Path("/usr/share/OVMF/OVMF_CODE.fd"), Path("/usr/share/OVMF/OVMF_VARS.fd")),
)

FW_CFG_PREFIX = "opt/ironforge/"


@dataclass(frozen=True)
class Disk:
    path: Path
    format: str = "qcow2"          # always the *detected* format (builder.image.probe), never guessed
    bus: str = "virtio"            # virtio | scsi | sata | ide
    readonly: bool = False
    snapshot: bool = False         # writes go to a temporary overlay QEMU deletes on exit
    discard: bool = True           # pass guest TRIM through so overlays stay small
    media: str = "disk"            # disk | cdrom


@dataclass(frozen=True)
class MachineSpec:
    arch: str                      # "x86_64" | "i686" (aliases accepted)
    accel: Accel
    memory_mb: int = 1024
    cpus: int = 1
    firmware: str = "bios"         # "bios" | "uefi" (OVMF, 64-bit only)
    disks: tuple[Disk, ...] = ()
    nic: str | None = "virtio"     # "virtio" | "e1000" | None; user-mode networking
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    serial_log: Path | None = None               # ttyS0 to this file
    extra_serial_logs: tuple[Path, ...] = ()     # ttyS1.. to these files
    serial_stdio: bool = False                   # ttyS0 on our stdin/stdout (interactive runs)
    fw_cfg: dict[str, str] = field(default_factory=dict)   # opt/ironforge/<name> = string
    smbios_oem_strings: tuple[str, ...] = ()     # SMBIOS type 11
    no_reboot: bool = True
    display: bool = False
    efi_vars: Path | None = None   # writable OVMF vars file; None = pristine vars, discarded on exit
    rng: bool = True               # virtio-rng: guests otherwise stall on entropy under TCG
    sandbox: bool = True           # seccomp: the image may be hostile
    name: str | None = None


def _esc(value: str) -> str:
    """QEMU option values escape a comma by doubling it."""
    return str(value).replace(",", ",,")


def find_ovmf() -> tuple[Path, Path]:
    for code, vars_ in OVMF_PAIRS:
        if code.exists() and vars_.exists():
            return code, vars_
    raise MissingEnvironment("UEFI firmware (OVMF) not found under /usr/share/OVMF",
                             hint="install it: apt-get install ovmf  (or run: make setup)")


def _validate(spec: MachineSpec) -> str:
    try:
        arch = archmod.normalise(spec.arch)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if spec.firmware not in FIRMWARES:
        raise UsageError(f"firmware: expected one of {', '.join(FIRMWARES)}, got {spec.firmware!r}")
    if spec.firmware == "uefi" and arch != archmod.X86_64:
        raise UsageError("UEFI firmware is only available for x86_64 guests here: Debian's ovmf package "
                         "ships no 32-bit (ia32) OVMF build",
                         hint='use firmware = "bios" for i686 images')
    if spec.nic is not None and spec.nic not in NICS:
        raise UsageError(f"nic: expected one of {', '.join(NICS)} or none, got {spec.nic!r}")
    for d in spec.disks:
        if d.bus not in BUSES:
            raise UsageError(f"disk {d.path}: bus must be one of {', '.join(BUSES)}, got {d.bus!r}")
        if d.media not in ("disk", "cdrom"):
            raise UsageError(f"disk {d.path}: media must be disk or cdrom, got {d.media!r}")
    if (spec.initrd or spec.append) and not spec.kernel:
        raise UsageError("initrd/append need a kernel")
    if spec.serial_stdio and spec.serial_log:
        raise UsageError("ttyS0 goes either to a log file or to stdio, not both")
    if spec.memory_mb < 64 or spec.cpus < 1:
        raise UsageError(f"memory {spec.memory_mb} MiB / cpus {spec.cpus}: too small")
    for name in spec.fw_cfg:
        if not name or "/" in name or len(FW_CFG_PREFIX + name) > 55:
            raise UsageError(f"fw_cfg name {name!r}: must be a short word (fw_cfg names are ≤ 55 bytes)")
    return arch


def _cpu_args(arch: str, accel: Accel) -> list[str]:
    if accel.kvm:
        return []  # Accel.qemu_args() already says -cpu host
    # "max" is every feature TCG emulates. For qemu-system-i386 that includes PAE and NX (what the
    # Debian 686-pae kernel requires) and excludes long mode, so a 32-bit guest sees a 32-bit CPU.
    return ["-cpu", "max"]


def _disk_args(spec: MachineSpec, machine: str) -> list[str]:
    args: list[str] = []
    have_scsi = have_ahci = False
    sata_port = ide_slot = 0
    for i, d in enumerate(spec.disks):
        node = f"disk{i}"
        opts = [f"file={_esc(str(d.path))}", f"format={_esc(d.format)}", "if=none", f"id={node}"]
        if d.media == "cdrom":
            opts.append("media=cdrom")
        if d.readonly or d.media == "cdrom":
            opts.append("readonly=on")
        if d.snapshot:
            opts.append("snapshot=on")
        if d.discard and not d.readonly and d.media == "disk":
            opts.append("discard=unmap")
        args += ["-drive", ",".join(opts)]
        boot = f"bootindex={i + 1}"  # 0 belongs to -kernel's linuxboot ROM when present
        if d.bus == "virtio":
            dev = "virtio-blk-pci" if d.media == "disk" else None
            if dev is None:  # a virtio CD is a scsi-cd on virtio-scsi
                d = Disk(d.path, d.format, "scsi", d.readonly, d.snapshot, d.discard, d.media)
            else:
                args += ["-device", f"{dev},drive={node},{boot}"]
                continue
        if d.bus == "scsi":
            if not have_scsi:
                args += ["-device", "virtio-scsi-pci,id=scsi0"]
                have_scsi = True
            kind = "scsi-cd" if d.media == "cdrom" else "scsi-hd"
            args += ["-device", f"{kind},drive={node},bus=scsi0.0,{boot}"]
        elif d.bus == "sata":
            if not have_ahci:
                args += ["-device", "ahci,id=ahci0"]
                have_ahci = True
            kind = "ide-cd" if d.media == "cdrom" else "ide-hd"
            args += ["-device", f"{kind},drive={node},bus=ahci0.{sata_port},{boot}"]
            sata_port += 1
        else:  # ide: the machine's own controller
            kind = "ide-cd" if d.media == "cdrom" else "ide-hd"
            if machine == "pc":  # PIIX: two buses, master and slave on each
                where = f"bus=ide.{ide_slot // 2},unit={ide_slot % 2}"
            else:  # q35: the ICH9 AHCI controller named "ide", one device per port
                where = f"bus=ide.{ide_slot}"
            args += ["-device", f"{kind},drive={node},{where},{boot}"]
            ide_slot += 1
    return args


def build_command(spec: MachineSpec, qmp_socket: Path | None, *, binary: str | None = None,
                  serial_sockets: dict[Path, Path] | None = None) -> list[str]:
    """The QEMU command line for ``spec``; ``qmp_socket`` is where QEMU listens for QMP (None: no QMP).

    A serial log named in ``serial_sockets`` goes to that unix socket instead of straight to the
    file (``QemuMachine`` listens there and writes the log with a size cap, builder.runner.serialcap).
    """
    socks = serial_sockets or {}

    def serial(n: int, path: Path) -> list[str]:
        if path in socks:
            dev = f"socket,id=ser{n},path={_esc(str(socks[path]))},server=off"
        else:
            dev = f"file,id=ser{n},path={_esc(str(path))}"
        return ["-chardev", dev, "-serial", f"chardev:ser{n}"]

    arch = _validate(spec)
    # i440fx for BIOS (widest guest support, real IDE); q35 for UEFI (what OVMF is built and tested for).
    machine = "q35" if spec.firmware == "uefi" else "pc"
    cmd = [binary or archmod.QEMU_BINARY[arch], "-nodefaults", "-no-user-config",
           "-name", _esc(spec.name or "ironforge"),
           "-machine", f"{machine}", *spec.accel.qemu_args(), *_cpu_args(arch, spec.accel),
           "-m", str(int(spec.memory_mb)), "-smp", str(int(spec.cpus)),
           "-rtc", "base=utc"]
    if spec.sandbox:
        cmd += ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
    if spec.firmware == "uefi":
        code, pristine_vars = find_ovmf()
        cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={_esc(str(code))}"]
        if spec.efi_vars:
            cmd += ["-drive", f"if=pflash,format=raw,unit=1,file={_esc(str(spec.efi_vars))}"]
        else:  # fresh NVRAM each boot, as anyone booting the published image gets it
            cmd += ["-drive", f"if=pflash,format=raw,unit=1,snapshot=on,file={_esc(str(pristine_vars))}"]
    # A VGA device even when headless: screendump needs one, and tty0 output lands there.
    cmd += ["-vga", "std"]
    cmd += ["-display", "gtk" if spec.display else "none"]
    if spec.serial_stdio:
        # mon:stdio multiplexes the HMP monitor (Ctrl-A c) and lets a person quit with Ctrl-A x.
        cmd += ["-serial", "mon:stdio"]
    elif spec.serial_log:
        cmd += serial(0, spec.serial_log)
    elif spec.extra_serial_logs:
        cmd += ["-serial", "null"]  # keep ttyS1.. where the guest expects them
    for n, path in enumerate(spec.extra_serial_logs, start=1):
        cmd += serial(n, path)
    if qmp_socket is not None:
        cmd += ["-chardev", f"socket,id=qmp,path={_esc(str(qmp_socket))},server=on,wait=off",
                "-mon", "chardev=qmp,mode=control"]
    cmd += _disk_args(spec, machine)
    if spec.nic is None:
        pass  # -nodefaults: no NIC at all
    else:
        model = {"virtio": "virtio-net-pci", "e1000": "e1000"}[spec.nic]
        cmd += ["-netdev", "user,id=net0", "-device", f"{model},netdev=net0"]
    if spec.rng:
        cmd += ["-object", "rng-random,id=rng0,filename=/dev/urandom",
                "-device", "virtio-rng-pci,rng=rng0"]
    if spec.kernel:
        cmd += ["-kernel", str(spec.kernel)]
        if spec.initrd:
            cmd += ["-initrd", str(spec.initrd)]
        if spec.append:
            cmd += ["-append", spec.append]
    for name, value in spec.fw_cfg.items():
        cmd += ["-fw_cfg", f"name={FW_CFG_PREFIX}{name},string={_esc(value)}"]
    if spec.smbios_oem_strings:
        cmd += ["-smbios", "type=11," + ",".join(f"value={_esc(s)}" for s in spec.smbios_oem_strings)]
    if spec.no_reboot:
        cmd += ["-no-reboot"]
    return cmd


# ---------------------------------------------------------------------------------------------- process

def _sweep_stale_runtime_dirs(current: Path) -> None:
    """Remove runtime dirs of QEMUs that are gone (their parent was SIGKILLed, so nobody cleaned up).

    Only directories with a pid file naming a dead process: a dir still being set up has none yet.
    """
    for d in current.parent.glob("ifq-*"):
        if d == current:
            continue
        try:
            pid = int((d / "pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


class _QMP:
    """A synchronous face on qemu.qmp's asyncio QMPClient, its loop running in a private thread."""

    def __init__(self, name: str):
        from qemu.qmp import QMPClient  # imported here so the command builder works without it

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self.events: list[dict] = []

    def _run(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop).result(timeout + 5)

    def connect(self, path: Path, timeout: float) -> None:
        self._run(self._client.connect(str(path)), timeout)
        # collect events (SHUTDOWN, GUEST_PANICKED, …) as they come
        async def listen():
            with self._client.listen() as listener:
                async for event in listener:
                    self.events.append(dict(event))
        self._listener = asyncio.run_coroutine_threadsafe(listen(), self._loop)

    def execute(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 30.0):
        return self._run(self._client.execute(cmd, args), timeout)

    def close(self) -> None:
        try:
            self._run(self._client.disconnect(), 5.0)
        except Exception:  # noqa: BLE001 - the peer may already be gone; nothing to report
            pass
        listener = getattr(self, "_listener", None)
        if listener is not None:
            listener.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


class QemuMachine:
    """One QEMU process for ``spec``. Use as a context manager; the process dies on exit, always.

    ``with QemuMachine(spec) as m: m.start(); code = m.wait(600)``
    (``__enter__`` does not start it, so a caller can prepare files first; ``start()`` is idempotent.)
    """

    def __init__(self, spec: MachineSpec, *, qmp: bool = True, stdio: bool | None = None):
        self.spec = spec
        self._want_qmp = qmp
        self._stdio = spec.serial_stdio if stdio is None else stdio
        self._runtime: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.qmp: _QMP | None = None
        self.command: list[str] = []
        self.started_at: float | None = None
        self.serial_cap = SERIAL_LOG_CAP
        self._serial_logs: list[SerialLog] = []

    # -- lifecycle
    def __enter__(self) -> "QemuMachine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "QemuMachine":
        if self.proc is not None:
            return self
        arch = _validate(self.spec)
        binary = tools.require(archmod.QEMU_BINARY[arch])
        # A short directory: unix socket paths are limited to 108 bytes.
        self._runtime = Path(tempfile.mkdtemp(prefix="ifq-"))
        qmp_path = self._runtime / "qmp.sock" if self._want_qmp else None
        # Serial logs through our socket, capped (a guest printing without end must not fill
        # the disk); QEMU connects to each at start-up.
        logs = [] if self.spec.serial_stdio or not self.spec.serial_log else [self.spec.serial_log]
        logs += list(self.spec.extra_serial_logs)
        sockets: dict[Path, Path] = {}
        try:
            for n, path in enumerate(logs):
                sockets[path] = self._runtime / f"ser{n}.sock"
                self._serial_logs.append(SerialLog(path, sockets[path], cap=self.serial_cap))
        except BaseException:
            self.close()
            raise
        self.command = build_command(self.spec, qmp_path, binary=binary, serial_sockets=sockets)
        log.debug("starting %s", " ".join(self.command))
        stderr_path = self._runtime / "qemu.stderr"
        with open(stderr_path, "wb") as err:
            io = {} if self._stdio else {"stdin": subprocess.DEVNULL, "stdout": err}
            # Its own session (the terminal's Ctrl-C reaches only us: we stop QEMU ourselves,
            # in order, so a half-written overlay is less likely) and PDEATHSIG: it dies with us.
            # (PDEATHSIG fires when the *thread* that forked exits; machines are driven to
            # completion by the thread that started them.)
            self.proc = subprocess.Popen(self.command, stderr=err,
                                         preexec_fn=None if self._stdio else hostproc.child_setup(), **io)
        self.started_at = time.monotonic()
        (self._runtime / "pid").write_text(str(self.proc.pid))
        _sweep_stale_runtime_dirs(self._runtime)
        if qmp_path is not None:
            try:
                self._connect_qmp(qmp_path)
            except BaseException:
                self.close()
                raise
        return self

    def _connect_qmp(self, path: Path, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.proc.poll() is not None:
                raise BuildError(f"QEMU exited at start (code {self.proc.returncode}): {self.stderr_text()}",
                                 hint="the command is logged at debug level (--debug)")
            if time.monotonic() > deadline:
                raise BuildError("QEMU did not open its QMP socket within 30 s")
            time.sleep(0.02)
        self.qmp = _QMP(self.spec.name or "ironforge")
        try:
            self.qmp.connect(path, max(1.0, deadline - time.monotonic()))
        except Exception as exc:
            if self.proc.poll() is not None:
                raise BuildError(f"QEMU exited at start (code {self.proc.returncode}): {self.stderr_text()}") from exc
            raise BuildError(f"could not talk QMP to QEMU: {exc}") from exc

    def close(self) -> None:
        """Kill QEMU if still running, drop QMP, remove the runtime directory."""
        try:
            self.kill()
        finally:
            for sl in self._serial_logs:
                sl.close()
            self._serial_logs = []
            if self.qmp is not None:
                self.qmp.close()
                self.qmp = None
            if self._runtime is not None:
                self._stderr_cache = self.stderr_text()
                shutil.rmtree(self._runtime, ignore_errors=True)
                self._runtime = None

    # -- state
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        code = None if self.proc is None else self.proc.poll()
        if code is not None:
            self._drain_serial()
        return code

    def _drain_serial(self, timeout: float = 5.0) -> None:
        """QEMU is gone: let the serial copiers write its last bytes before anyone reads the log
        (closing also stops a copier QEMU never connected to, so this never waits for nothing)."""
        for sl in self._serial_logs:
            sl.close(timeout)

    def stderr_text(self, limit: int = 4000) -> str:
        if self._runtime is None:
            return getattr(self, "_stderr_cache", "")
        try:
            return (self._runtime / "qemu.stderr").read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""

    # -- control
    def wait(self, timeout: float | None = None) -> int:
        """Wait for QEMU to exit; its exit code. Raises TimeoutError if it is still running."""
        if self.proc is None:
            raise BuildError("QemuMachine.wait() before start()")
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"QEMU still running after {timeout} s") from None
        self._drain_serial()
        return code

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def poweroff(self) -> None:
        """ACPI power button (the guest decides); see quit() for the hard stop."""
        self._qmp().execute("system_powerdown")

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self._qmp().execute("quit", timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.kill()

    def screendump(self, png_path: Path) -> Path:
        """Save the guest screen as PNG (QMP gives PPM; converted here without PIL)."""
        from builder.runner.ppm import ppm_to_png

        png_path = Path(png_path)
        png_path.parent.mkdir(parents=True, exist_ok=True)
        ppm = png_path.with_suffix(".ppm.tmp")
        try:
            self._qmp().execute("screendump", {"filename": str(ppm.resolve())})
            ppm_to_png(ppm, png_path)
        finally:
            with contextlib.suppress(OSError):
                ppm.unlink()
        return png_path

    def events(self) -> list[dict]:
        return list(self.qmp.events) if self.qmp else []

    def _qmp(self) -> _QMP:
        if self.qmp is None:
            raise BuildError("this QEMU machine has no QMP connection (not started, or started without QMP)")
        return self.qmp
