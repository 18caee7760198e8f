"""GRUB: its defaults (serial console) and its installation from inside the image.

Images ironforge builds get GRUB from the host (``grub_host``); this in-guest path is for disks
whose layout is not ours (conversions, a container made bootable). There grub-install and
update-grub run inside the libguestfs appliance (``g.command`` chroots into
the mounted guest with /dev, /proc and /sys bound), because they probe the real disk: that is
the only part of making the disk that needs the guest's own code.

Device names: libguestfs translates the names its API takes (/dev/sda is always the first
drive added), but not strings inside a command run in the guest. The appliance kernel names its
disks in the order their (asynchronous) probes finish, so our drive is /dev/sdb in about one
launch in three here, even with scsi_mod.scan=sync; a literal "grub-install /dev/sda" then aimed
at the appliance's own disk ("embedding is not possible ... cross-disk install"). The install
disk is therefore asked of GRUB itself: the disk holding /boot. One visible trace remains:
grub.cfg's search hint reads hd1 instead of hd0 in those builds; GRUB finds the root by UUID
either way (a wrong hint costs one probe).
"""

from __future__ import annotations

import logging
import re

from builder.errors import BuildError
from builder.host.guestfs_session import guest_command, guest_sh

log = logging.getLogger("ironforge.linux.bootloader")

# grub-probe answers in a second; grub-install and update-grub (os-prober) in well under a minute
# under TCG (a few minutes on a loaded host): the limits only catch a hang.
PROBE_LIMIT = 120
INSTALL_LIMIT = 1800

SERIAL_CMDLINE = "console=tty0 console=ttyS0,115200"

GRUB_DEFAULTS = {
    "GRUB_TIMEOUT": "1",
    # no "quiet": the boot log on the serial console is what verification reads for progress
    "GRUB_CMDLINE_LINUX_DEFAULT": "",
    "GRUB_CMDLINE_LINUX": SERIAL_CMDLINE,
    "GRUB_TERMINAL": "console serial",
    "GRUB_SERIAL_COMMAND": "serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1",
    "GRUB_DISABLE_OS_PROBER": "true",
}


def install_commands(firmware: str, disk: str) -> list[list[str]]:
    """The commands, run inside the guest, that make it bootable; ``disk`` is the kernel's
    name for the install disk inside the appliance (see target_disk)."""
    if firmware == "uefi":
        # --removable: \\EFI\\BOOT\\BOOTX64.EFI, found by any UEFI without NVRAM entries (the
        # image's NVRAM is not ours to write); --no-nvram: don't try.
        install = ["grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi",
                   "--removable", "--no-nvram", "--no-floppy"]
    else:
        install = ["grub-install", "--target=i386-pc", "--no-floppy", disk]
    return [install, ["update-grub"]]


_WHOLE_DISK = re.compile(r"^/dev/(?:[sv]d[a-z]+|nvme\d+n\d+|xvd[a-z]+)$")


def target_disk(g) -> str:
    """The appliance kernel's name for the disk that holds /boot (GRUB goes there), as GRUB sees it."""
    disk = guest_command(g, ["grub-probe", "--target=disk", "/boot"], limit=PROBE_LIMIT).strip()
    if not _WHOLE_DISK.match(disk):
        raise BuildError(f"grub-probe names {disk!r} as the disk holding /boot, not a whole disk",
                         hint="the image's /boot must be on a partitioned disk")
    return disk


def check_grub_cfg(text: str, root_uuid: str) -> list[str]:
    """Problems with a generated grub.cfg: it must boot root=UUID=<root_uuid> with the serial
    console on every Linux entry."""
    problems = []
    entries = [ln.strip() for ln in text.splitlines() if re.match(r"\s*linux(16)?\s", ln)]
    if not entries:
        problems.append("no 'linux' line in grub.cfg")
    for ln in entries:
        if f"root=UUID={root_uuid}" not in ln:
            problems.append(f"not root=UUID={root_uuid}: {ln}")
        if "console=ttyS0,115200" not in ln:
            problems.append(f"no serial console: {ln}")
    return problems


# What GRUB looked at, quoted when grub-install fails: its idea of the boot directory's drive
# and disk, and the kernel's view of the block devices.
DIAGNOSTICS = ("grub-probe --target=drive /boot", "grub-probe --target=disk /boot",
               "cat /proc/partitions", "grep ' / ' /proc/self/mountinfo")


def diagnose(g) -> str:
    out = []
    for cmd in DIAGNOSTICS:
        try:
            out.append(f"$ {cmd}\n{guest_sh(g, cmd + ' 2>&1 || true', limit=PROBE_LIMIT, what=cmd).rstrip()}")
        except BuildError as exc:
            out.append(f"$ {cmd}\n(failed: {exc.message})")
    return "\n".join(out)


def _run(g, cmd: list[str]) -> str:
    try:
        return guest_command(g, cmd, limit=INSTALL_LIMIT)
    except BuildError as exc:
        if cmd[0] != "grub-install":
            raise
        raise BuildError(f"{exc.message}\nwhat GRUB saw:\n{diagnose(g)}", exc.hint) from exc


def install(g, firmware: str, root_uuid: str, logger: logging.Logger | None = None) -> str:
    """Install GRUB in the mounted guest; returns grub.cfg after checking it."""
    logger = logger or log
    disk = target_disk(g) if firmware != "uefi" else ""     # a removable UEFI install names no disk
    for cmd in install_commands(firmware, disk):
        logger.info("in guest: %s", " ".join(cmd))
        out = _run(g, cmd)
        for line in out.splitlines():
            logger.debug("  %s", line)
    cfg = g.cat("/boot/grub/grub.cfg")
    problems = check_grub_cfg(cfg, root_uuid)
    if problems:
        raise BuildError("the generated grub.cfg would not boot this image:\n  " + "\n  ".join(problems),
                         hint="check GRUB_DISABLE_LINUX_UUID and /etc/default/grub in the image")
    return cfg
