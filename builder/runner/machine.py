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
import re
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
# a unicast MAC (the first octet's low bit clear): QEMU refuses a multicast one late, at start
_MAC = re.compile(r"[0-9a-fA-F][02468aceACE](?::[0-9a-fA-F]{2}){5}")
FIRMWARES = ("bios", "uefi")

# OVMF from Debian's ``ovmf`` package: (code, vars) pairs, best first.
OVMF_PAIRS = (
    (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    (Path("/usr/share/OVMF/OVMF_CODE.fd"), Path("/usr/share/OVMF/OVMF_VARS.fd")),
)

# Secure Boot: the SMM-requiring code with the template that has Microsoft's keys enrolled and
# Secure Boot already on (what Windows 11 and signed Windows media expect).
OVMF_SECURE_BOOT = (Path("/usr/share/OVMF/OVMF_CODE_4M.ms.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"))

CHIPSETS = ("auto", "pc", "q35")
TPMS = (None, "swtpm")
# Hyper-V enlightenments Windows uses to avoid costly emulated paths under KVM (spinlock retries,
# APIC EOI, the reference TSC page). They only help with KVM: TCG cannot provide most of them.
HYPERV_FLAGS = ("hv_relaxed", "hv_vapic", "hv_spinlocks=0x1fff", "hv_time")

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
    mac: str | None = None         # the NIC's MAC; None: QEMU's default (52:54:00:12:34:56)
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
    # Windows guests (all default off, so Linux machines are unchanged):
    chipset: str = "auto"          # auto: q35 for UEFI, pc (i440fx) for BIOS
    secure_boot: bool = False      # UEFI with Microsoft keys enrolled (needs SMM, hence q35)
    tpm: str | None = None         # "swtpm": a TPM 2.0 emulated by swtpm, offered as tpm-crb
    tpm_state: Path | None = None  # swtpm state directory; None = a fresh one per run
    hyperv: bool = False           # Hyper-V enlightenments (KVM only; ignored under TCG)
    usb_tablet: bool = False       # absolute pointer: the screen and QMP input stay in step


def _esc(value: str) -> str:
    """QEMU option values escape a comma by doubling it."""
    return str(value).replace(",", ",,")


def find_ovmf(secure_boot: bool = False) -> tuple[Path, Path]:
    if secure_boot:
        code, vars_ = OVMF_SECURE_BOOT
        if code.exists() and vars_.exists():
            return code, vars_
        raise MissingEnvironment(f"Secure Boot UEFI firmware not found ({code.name}, {vars_.name})",
                                 hint="install it: apt-get install ovmf  (or run: make setup)")
    for code, vars_ in OVMF_PAIRS:
        if code.exists() and vars_.exists():
            return code, vars_
    raise MissingEnvironment("UEFI firmware (OVMF) not found under /usr/share/OVMF",
                             hint="install it: apt-get install ovmf  (or run: make setup)")


def prepare_efi_vars(dest: Path, secure_boot: bool = False) -> Path:
    """A private, writable copy of the OVMF variable template for one machine.

    Each guest gets its own copy (Debian's README.Debian): a Windows install writes its boot
    entries there across the reboots of one run, and must never write into the shared template.
    """
    _code, template = find_ovmf(secure_boot)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(template, tmp)
    tmp.replace(dest)
    return dest


def machine_type(spec: MachineSpec) -> str:
    """pc (i440fx: widest guest support, real IDE) for BIOS; q35 (what OVMF is built and tested for,
    and the only one with SMM for Secure Boot) for UEFI; ``chipset`` overrides."""
    if spec.chipset != "auto":
        return spec.chipset
    return "q35" if spec.firmware == "uefi" else "pc"


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
    if spec.mac is not None and not _MAC.fullmatch(spec.mac):
        raise UsageError(f"mac: expected six colon-separated hex pairs (a unicast address), got {spec.mac!r}")
    for d in spec.disks:
        if d.bus not in BUSES:
            raise UsageError(f"disk {d.path}: bus must be one of {', '.join(BUSES)}, got {d.bus!r}")
        if d.media not in ("disk", "cdrom"):
            raise UsageError(f"disk {d.path}: media must be disk or cdrom, got {d.media!r}")
    if spec.chipset not in CHIPSETS:
        raise UsageError(f"chipset: expected one of {', '.join(CHIPSETS)}, got {spec.chipset!r}")
    if spec.secure_boot and spec.firmware != "uefi":
        raise UsageError("Secure Boot needs UEFI firmware", hint='set firmware = "uefi"')
    if spec.secure_boot and machine_type(spec) != "q35":
        raise UsageError("Secure Boot needs the q35 chipset (OVMF's Secure Boot build requires SMM)")
    if spec.tpm not in TPMS:
        raise UsageError(f"tpm: expected swtpm or none, got {spec.tpm!r}")
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


def _cpu_args(arch: str, accel: Accel, hyperv: bool = False) -> list[str]:
    if accel.kvm:
        if hyperv:  # replaces Accel.qemu_args()'s plain "-cpu host"
            return ["-cpu", ",".join(("host", *HYPERV_FLAGS))]
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
                  serial_sockets: dict[Path, Path] | None = None, tpm_socket: Path | None = None) -> list[str]:
    """The QEMU command line for ``spec``; ``qmp_socket`` is where QEMU listens for QMP (None: no QMP);
    ``tpm_socket`` is the control socket of the swtpm serving this machine (``spec.tpm``).

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
    if spec.tpm and tpm_socket is None:
        raise UsageError("a machine with a TPM needs the swtpm socket (QemuMachine starts swtpm)")
    machine = machine_type(spec)
    # Secure Boot firmware refuses to run without SMM; SMM is otherwise left at QEMU's default.
    machine_opts = machine + (",smm=on" if spec.secure_boot else "")
    accel_args, cpu_args = list(spec.accel.qemu_args()), _cpu_args(arch, spec.accel, spec.hyperv)
    if cpu_args and "-cpu" in accel_args:  # one -cpu on the line, ours
        i = accel_args.index("-cpu")
        del accel_args[i:i + 2]
    cmd = [binary or archmod.QEMU_BINARY[arch], "-nodefaults", "-no-user-config",
           "-name", _esc(spec.name or "ironforge"),
           "-machine", machine_opts, *accel_args, *cpu_args,
           "-m", str(int(spec.memory_mb)), "-smp", str(int(spec.cpus)),
           "-rtc", "base=utc"]
    if spec.sandbox:
        cmd += ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
    if spec.firmware == "uefi":
        code, pristine_vars = find_ovmf(spec.secure_boot)
        if spec.secure_boot:  # only SMM code may write the flash: what makes the keys trustworthy
            cmd += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
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
        # -S: the CPUs wait for QMP "cont" (QemuMachine.start sends it once the session is up).
        # QEMU 7.2 can write the start-up RESUME event to a client that connects before its
        # greeting goes out, and the session then fails ("'Greeting' object requires 'QMP'
        # member"); paused until negotiated, no event precedes the greeting, and none is missed.
        cmd += ["-S", "-chardev", f"socket,id=qmp,path={_esc(str(qmp_socket))},server=on,wait=off",
                "-mon", "chardev=qmp,mode=control"]
    cmd += _disk_args(spec, machine)
    if spec.nic is None:
        pass  # -nodefaults: no NIC at all
    else:
        model = {"virtio": "virtio-net-pci", "e1000": "e1000"}[spec.nic]
        cmd += ["-netdev", "user,id=net0", "-device", f"{model},netdev=net0" + (f",mac={spec.mac}" if spec.mac else "")]
    if spec.tpm:
        cmd += ["-chardev", f"socket,id=chrtpm,path={_esc(str(tpm_socket))}",
                "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                # CRB is the TPM 2.0 interface Windows 11 expects; TIS is the older one
                "-device", "tpm-crb,tpmdev=tpm0"]
    if spec.usb_tablet:
        cmd += ["-device", "qemu-xhci,id=xhci", "-device", "usb-tablet,bus=xhci.0"]
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
            # listener() makes and registers a new EventListener; listen() with no argument
            # registers none, and then no event was ever collected
            self._listen_task = asyncio.current_task()
            with self._client.listener() as listener:
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
        task = getattr(self, "_listen_task", None)
        if task is not None:  # cancelled and awaited in its loop, so it is not destroyed pending
            async def stop_listener():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            with contextlib.suppress(Exception):
                self._run(stop_listener(), 2.0)
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
        self.swtpm: subprocess.Popen | None = None

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
        tpm_path = None
        if self.spec.tpm:
            try:
                tpm_path = self._start_swtpm()
            except BaseException:
                self.close()
                raise
        self.command = build_command(self.spec, qmp_path, binary=binary, serial_sockets=sockets,
                                     tpm_socket=tpm_path)
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
                self.qmp.execute("cont")  # started with -S (build_command): run now that we listen
            except BaseException:
                self.close()
                raise
        return self

    def _start_swtpm(self, timeout: float = 15.0) -> Path:
        """Start the swtpm that emulates this machine's TPM; it dies with the machine (close()) and,
        via --terminate, as soon as QEMU drops its connection."""
        from builder.host import proc

        binary = tools.require("swtpm")
        state = Path(self.spec.tpm_state) if self.spec.tpm_state else self._runtime / "tpm"
        state.mkdir(parents=True, exist_ok=True)
        sock = self._runtime / "swtpm.sock"
        log_path = self._runtime / "swtpm.log"
        with open(log_path, "wb") as out:
            self.swtpm = proc.spawn([binary, "socket", "--tpm2", "--tpmstate", f"dir={state}",
                                     "--ctrl", f"type=unixio,path={sock}", "--terminate",
                                     "--log", f"file={log_path},level=1"],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if self.swtpm.poll() is not None:
                text = log_path.read_text(errors="replace")[-2000:].strip()
                raise BuildError(f"swtpm exited at start (code {self.swtpm.returncode}): {text or 'no output'}")
            if time.monotonic() > deadline:
                raise BuildError(f"swtpm did not open its socket within {timeout:.0f} s")
            time.sleep(0.02)
        return sock

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
            swtpm = getattr(self, "swtpm", None)
            if swtpm is not None:
                from builder.host.proc import kill_group

                kill_group(swtpm)
                self.swtpm = None
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
