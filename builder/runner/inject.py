"""Put the boot probe into a throw-away overlay with libguestfs (one launch), and learn the guest's facts.

Only the overlay is opened writable; the image under it is its read-only backing file, so the image's
bytes cannot change. The same launch inspects the guest (OS, arch, firmware hints) so verifying a bare
image needs no second appliance boot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.errors import VerifyError
from builder.host import guest_os
from builder.host.accel import Accel
from builder.host.guestfs_session import Drive, session
from builder.runner import guest_probe


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
    Windows, builder.windows.verify_probe. One launch either way. Returns the guest's facts."""
    with session([Drive(Path(overlay), "qcow2", readonly=False)], accel, what=what) as g:
        roots = g.inspect_os()
        if roots and g.inspect_get_type(roots[0]) == "windows":
            return _inject_windows(g, roots[0], settle_seconds, what)
        return _inject_linux(g, settle_seconds, what)


def _inject_windows(g, root: str, settle_seconds: int, what: str) -> GuestFacts:
    # same launch: a .cmd/PowerShell probe and a SYSTEM hive trigger (see verify_probe's docstring)
    from builder.windows import verify_probe

    wf = verify_probe.inject(g, root, wait_seconds=settle_seconds, what=what)
    return GuestFacts(os_type="windows", distro=g.inspect_get_distro(root),
                      version=f"{g.inspect_get_major_version(root)}.{g.inspect_get_minor_version(root)}",
                      arch=wf.arch, firmware=wf.firmware, hostname=g.inspect_get_hostname(root), build=wf.build)


def _inject_linux(g, settle_seconds: int, what: str) -> GuestFacts:
    with guest_os.opened(g, what=what, error=VerifyError, want_type="linux",
                         type_hint="only Linux guests with systemd and Windows guests can be verified",
                         # verify takes images made anywhere: a multi-boot disk gets the probe in
                         # the first OS, and a stale fstab entry must not stop the verdict
                         first_of_several=True, skip_unmountable=True,
                         # the overlay is thrown away after the boot: trimming it saves nothing
                         trim_after=False) as guest:
        root = guest.root
        facts_arch = g.inspect_get_arch(root)
        distro = g.inspect_get_distro(root)
        version = f"{g.inspect_get_major_version(root)}.{g.inspect_get_minor_version(root)}"
        hostname = g.inspect_get_hostname(root)
        if not any(g.exists(p) for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd")):
            raise VerifyError(f"{what}: the guest has no systemd; the boot probe is a systemd unit",
                              hint="verify.checks cannot prove a non-systemd guest booted yet")
        firmware = _firmware_guess(g, guest.devices)
        script_dir = str(Path(guest_probe.SCRIPT_PATH).parent)
        g.mkdir_p(script_dir)
        g.write(guest_probe.SCRIPT_PATH, guest_probe.script(settle_seconds).encode())
        g.chmod(0o755, guest_probe.SCRIPT_PATH)
        g.mkdir_p(str(Path(guest_probe.WANTS_LINK).parent))
        g.write(guest_probe.UNIT_PATH, guest_probe.unit().encode())
        g.ln_sf(guest_probe.UNIT_PATH, guest_probe.WANTS_LINK)
        g.sync()
    return GuestFacts(os_type=guest.type, distro=distro, version=version, arch=facts_arch, firmware=firmware,
                      hostname=hostname)
