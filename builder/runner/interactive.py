"""``ironforge run IMAGE``: boot an image for a person, serial console on the terminal.

Snapshot by default: every write goes to a temporary overlay QEMU drops on exit, so trying an image
never changes it. Ctrl-A x quits (QEMU's stdio multiplexer), Ctrl-A c toggles the QEMU monitor.
"""

from __future__ import annotations

import logging
from pathlib import Path

from builder import arch as archmod
from builder.errors import UsageError
from builder.host.accel import Accel, choose
from builder.image.probe import DEFAULT_MAX_VIRTUAL_SIZE, probe
from builder.runner.machine import Disk, MachineSpec, QemuMachine

log = logging.getLogger("ironforge.run")


def interactive_spec(image: Path, arch: str, accel: Accel, *, fmt: str, snapshot: bool = True,
                     firmware: str = "bios", memory_mb: int = 1024, cpus: int = 1, nic: str | None = "virtio",
                     bus: str = "virtio", display: bool = False) -> MachineSpec:
    return MachineSpec(arch=archmod.normalise(arch), accel=accel, memory_mb=memory_mb, cpus=cpus,
                       firmware=firmware, disks=(Disk(Path(image).resolve(), fmt, bus, snapshot=snapshot),),
                       nic=nic, serial_stdio=True, display=display, no_reboot=False,
                       name=f"ironforge-run-{Path(image).name}")


def inspect_arch(image: Path, fmt: str, accel: Accel) -> str:
    """The guest's architecture by libguestfs inspection (read-only, one launch)."""
    from builder.host.guestfs_session import Drive, session

    with session([Drive(image, fmt, readonly=True)], accel, what=f"run {image.name}: inspect") as g:
        roots = g.inspect_os()
        found = g.inspect_get_arch(roots[0]) if roots else None
    if not found or found not in archmod.ALIASES:
        raise UsageError(f"{image}: cannot tell its architecture ({found or 'no OS found'})",
                         hint="pass --arch x86_64 or --arch i686")
    return archmod.normalise(found)


def run_interactive(image: Path | str, arch: str | None, accel: Accel | None = None, snapshot: bool = True, *,
                    firmware: str = "bios", memory_mb: int = 1024, cpus: int = 1, nic: str | None = "virtio",
                    bus: str = "virtio", display: bool = False,
                    max_virtual_size: int = DEFAULT_MAX_VIRTUAL_SIZE) -> int:
    """Boot ``image`` attached to this terminal; returns QEMU's exit code when the person quits."""
    accel = accel or choose()
    info = probe(image, max_virtual_size=max_virtual_size)   # untrusted until proven otherwise
    image = info.path   # resolved by probe: no name QEMU could read as a protocol reaches it
    if arch is None:
        arch = inspect_arch(image, info.format, accel)
    spec = interactive_spec(image, arch, accel, fmt=info.format, snapshot=snapshot, firmware=firmware,
                            memory_mb=memory_mb, cpus=cpus, nic=nic, bus=bus, display=display)
    log.info("run: %s (%s, %s) under %s%s; quit with Ctrl-A x", image, info.format, spec.arch,
             accel.mode.upper(), ", snapshot: nothing is written back" if snapshot else ", WRITING to the image")
    with QemuMachine(spec, qmp=False, stdio=True) as m:
        m.start()
        try:
            return m.wait(None)
        except KeyboardInterrupt:
            return 130
