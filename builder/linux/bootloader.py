"""GRUB: its defaults (serial console) and its installation from inside the image.

grub-install and update-grub run inside the libguestfs appliance (``g.command`` chroots into
the mounted guest with /dev, /proc and /sys bound), because they probe the real disk: that is
the only part of making the disk that needs the guest's own code.
"""

from __future__ import annotations

import logging
import re

from builder.errors import BuildError

log = logging.getLogger("ironforge.linux.bootloader")

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


def install_commands(firmware: str, disk: str = "/dev/sda") -> list[list[str]]:
    """The commands, run inside the guest, that make it bootable."""
    if firmware == "uefi":
        # --removable: \\EFI\\BOOT\\BOOTX64.EFI, found by any UEFI without NVRAM entries (the
        # image's NVRAM is not ours to write); --no-nvram: don't try.
        install = ["grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi",
                   "--removable", "--no-nvram", "--no-floppy"]
    else:
        install = ["grub-install", "--target=i386-pc", "--no-floppy", disk]
    return [install, ["update-grub"]]


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


# What grub-install looked at, for the log when it fails: its idea of the boot directory's
# drive and disk, and the kernel's view of the block devices.
DIAGNOSTICS = ("grub-probe --target=drive /boot/grub", "grub-probe --target=disk /boot/grub",
               "cat /proc/partitions", "grep ' / ' /proc/self/mountinfo")


class GrubInstallError(BuildError):
    """grub-install failed in this appliance; ``diagnostics`` holds what it saw."""

    def __init__(self, message: str, hint: str | None = None, diagnostics: str = ""):
        super().__init__(message, hint)
        self.diagnostics = diagnostics


def diagnose(g) -> str:
    out = []
    for cmd in DIAGNOSTICS:
        try:
            out.append(f"$ {cmd}\n{g.sh(cmd + ' 2>&1 || true').rstrip()}")
        except BuildError as exc:
            out.append(f"$ {cmd}\n(failed: {exc.message})")
    return "\n".join(out)


def _with_retry(g, cmd: list[str], logger: logging.Logger, attempts: int = 2) -> str:
    """grub-install inside the appliance sometimes fails on a loaded host with "embedding is not
    possible ... cross-disk install" (seen about once in six builds): it took the install disk
    for a bare filesystem. Retrying in the same appliance rarely helps (seen failing three times
    in a row), a fresh appliance has always worked; so one retry here, then GrubInstallError
    with what GRUB saw, for the caller to relaunch."""
    for i in range(1, attempts + 1):
        try:
            return g.command(cmd)
        except BuildError as exc:
            if cmd[0] != "grub-install":
                raise
            diag = diagnose(g)
            logger.warning("%s failed (attempt %d of %d): %s", cmd[0], i, attempts,
                           exc.message.splitlines()[-1])
            logger.debug("what GRUB saw:\n%s", diag)
            if i == attempts:
                raise GrubInstallError(exc.message, exc.hint, diagnostics=diag) from exc
    raise AssertionError("unreachable")


def install(g, firmware: str, root_uuid: str, disk: str = "/dev/sda",
            logger: logging.Logger | None = None) -> str:
    """Install GRUB in the mounted guest; returns grub.cfg after checking it."""
    logger = logger or log
    for cmd in install_commands(firmware, disk):
        logger.info("in guest: %s", " ".join(cmd))
        out = _with_retry(g, cmd, logger)
        for line in out.splitlines():
            logger.debug("  %s", line)
    cfg = g.cat("/boot/grub/grub.cfg")
    problems = check_grub_cfg(cfg, root_uuid)
    if problems:
        raise BuildError("the generated grub.cfg would not boot this image:\n  " + "\n  ".join(problems),
                         hint="check GRUB_DISABLE_LINUX_UUID and /etc/default/grub in the image")
    return cfg
