"""Put the boot probe into a throw-away overlay with libguestfs (one launch), and learn the guest's facts.

Only the overlay is opened writable; the image under it is its read-only backing file, so the image's
bytes cannot change. The same launch inspects the guest (OS, arch, firmware hints) so verifying a bare
image needs no second appliance boot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from builder.errors import VerifyError
from builder.host.accel import Accel
from builder.host.guestfs_session import Drive, session
from builder.runner import guest_probe

log = logging.getLogger("ironforge.verify")

UNIT_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class GuestFacts:
    os_type: str            # linux, windows…
    distro: str
    version: str
    arch: str               # as libguestfs reports it (x86_64, i386…)
    firmware: str           # "uefi" or "bios": a guess from what the disk holds
    hostname: str = ""
    build: str | None = None   # Windows: CurrentBuildNumber from the SOFTWARE hive


def _firmware_guess(g, mountpoints: dict[str, str]) -> str:
    # GRUB installed for BIOS leaves /boot/grub/i386-pc; an ESP mounted at /boot/efi (or /efi) without
    # it means the image only boots with UEFI.
    has_bios_grub = g.is_dir("/boot/grub/i386-pc") or g.is_dir("/boot/grub2/i386-pc")
    has_esp = any(mp in ("/boot/efi", "/efi") for mp in mountpoints)
    return "uefi" if has_esp and not has_bios_grub else "bios"


def inject_probe(overlay: Path, accel: Accel, *, settle_seconds: int = 120,
                 what: str = "verify: inject probe") -> GuestFacts:
    """Install the probe into ``overlay`` (qcow2): Linux, a script and its enabled systemd unit;
    Windows, builder.windows.verify_probe. Returns the guest's facts."""
    with session([Drive(Path(overlay), "qcow2", readonly=False)], accel, what=what) as g:
        roots = g.inspect_os()
        if not roots:
            raise VerifyError(f"{what}: no operating system found in the image",
                              hint="is this a bootable system disk? libguestfs found no root filesystem")
        root = roots[0]
        os_type = g.inspect_get_type(root)
        facts_arch = g.inspect_get_arch(root)
        distro = g.inspect_get_distro(root)
        version = f"{g.inspect_get_major_version(root)}.{g.inspect_get_minor_version(root)}"
        hostname = g.inspect_get_hostname(root)
        if os_type == "windows":  # same launch: a .cmd/PowerShell probe and a SYSTEM hive trigger
            from builder.windows import verify_probe

            wf = verify_probe.inject(g, root, wait_seconds=settle_seconds, what=what)
            return GuestFacts(os_type=os_type, distro=distro, version=version, arch=wf.arch,
                              firmware=wf.firmware, hostname=hostname, build=wf.build)
        if os_type != "linux":
            raise VerifyError(f"{what}: verifying {os_type} guests is not implemented yet",
                              hint="only Linux guests with systemd and Windows guests can be verified")
        mountpoints = g.inspect_get_mountpoints(root)
        # the root inspection found goes on / whatever fstab says; then the rest, shortest first so
        # /boot mounts over /, /boot/efi over /boot
        g.mount(root, "/")
        for mp in sorted((m for m in mountpoints if m != "/"), key=len):
            try:
                g.mount(mountpoints[mp], mp)
            except Exception as exc:  # noqa: BLE001 - a swap or odd fstab entry must not stop us
                log.debug("%s: not mounting %s on %s: %s", what, mountpoints[mp], mp, exc)
        if not any(g.exists(p) for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd")):
            raise VerifyError(f"{what}: the guest has no systemd; the boot probe is a systemd unit",
                              hint="verify.checks cannot prove a non-systemd guest booted yet")
        firmware = _firmware_guess(g, mountpoints)
        script_dir = str(Path(guest_probe.SCRIPT_PATH).parent)
        g.mkdir_p(script_dir)
        g.write(guest_probe.SCRIPT_PATH, guest_probe.script(settle_seconds).encode())
        g.chmod(0o755, guest_probe.SCRIPT_PATH)
        g.mkdir_p(f"{UNIT_DIR}/multi-user.target.wants")
        g.write(f"{UNIT_DIR}/{guest_probe.UNIT_NAME}", guest_probe.unit().encode())
        g.ln_sf(f"{UNIT_DIR}/{guest_probe.UNIT_NAME}",
                f"{UNIT_DIR}/multi-user.target.wants/{guest_probe.UNIT_NAME}")
        g.sync()
        g.umount_all()
    return GuestFacts(os_type=os_type, distro=distro, version=version, arch=facts_arch, firmware=firmware,
                      hostname=hostname)
