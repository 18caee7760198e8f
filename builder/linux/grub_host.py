"""GRUB put into a disk image from the host: no appliance, no loop device, no mount.

Why: the disk stage launched a TCG appliance only for grub-install and update-grub (about 45 s
of a 145 s cold build here). For a disk whose layout we chose ourselves, what they do is small
and fixed, and is done here at native speed:

- The guest's own ``grub-mkimage`` (run in a chroot of the root tree, so the core image and the
  modules it loads later come from the same GRUB build) makes the core image, with an embedded
  config that finds the root filesystem by UUID and sets the prefix to its /boot/grub.
- The guest's module directory is copied to /boot/grub/<platform>, as grub-install does, plus
  an empty grubenv and a grub.cfg written here (``grub_cfg``). The guest's update-grub replaces
  that file at its first kernel upgrade, with the same defaults (GRUB_DEFAULTS).
- BIOS: boot.img's code goes into the MBR (the partition table and disk id kept), the core
  image into the gap after the MBR (MBR tables) or into the BIOS boot partition (GPT), and the
  two sector pointers grub-bios-setup writes are set: boot.img's kernel sector, and the first
  blocklist entry at the end of the core image's first sector (diskboot.img).
- UEFI: the core image is the removable-media loader \\EFI\\BOOT\\BOOTX64.EFI, copied into the
  FAT ESP with mtools (any UEFI without NVRAM entries finds it, as with ``--removable``).

Offsets are GRUB's (include/grub/i386/pc/boot.h): kernel sector at 0x5c (LE64), drive check
jump at 0x66, NT disk id at 0x1b8, blocklist {start LE64, len LE16, segment LE16} in the last
12 bytes of diskboot.img.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.host import proc as hostproc
from builder.host import tools
from builder.linux.bootloader import GRUB_DEFAULTS
from builder.linux.diskimage import SECTOR, Layout
from builder.linux.rootfs import kernel_version_key

KERNEL_SECTOR_AT = 0x5C
DRIVE_CHECK_AT = 0x66
BOOT_CODE_END = 0x1B8              # boot.img's code ends where the disk id and partition table begin
BLOCKLIST_AT = SECTOR - 12
KERNEL_SEGMENT = 0x820             # GRUB_BOOT_I386_PC_KERNEL_SEG + 0x20: where sector 2.. lands

# what grub-install puts in a core image for these disks; the rest loads from the prefix
CORE_MODULES = {
    "i386-pc": ["biosdisk", "part_msdos", "part_gpt", "ext2", "search_fs_uuid"],
    "x86_64-efi": ["part_gpt", "part_msdos", "fat", "ext2", "search_fs_uuid"],
}
MKIMAGE_TIMEOUT = 120
MTOOLS_TIMEOUT = 60


@dataclass(frozen=True)
class Prepared:
    """What ``prepare_tree`` leaves for ``finish``: the tree is gone by then."""
    platform: str               # "i386-pc" | "x86_64-efi"
    core: bytes
    boot_img: bytes             # BIOS only
    grub_cfg: str


def platform_for(firmware: str) -> str:
    return "x86_64-efi" if firmware == "uefi" else "i386-pc"


def part_hint(lay: Layout) -> str:
    return f"hd0,{'gpt' if lay.table == 'gpt' else 'msdos'}{lay.root.number}"


def load_cfg(root_uuid: str, lay: Layout) -> str:
    """The core image's embedded config: find the root filesystem, then its /boot/grub."""
    return (f"search.fs_uuid {root_uuid} root {part_hint(lay)}\n"
            "set prefix=($root)'/boot/grub'\n")


def grub_cfg(root_uuid: str, lay: Layout, kernels: list[str], os_name: str = "Debian GNU/Linux") -> str:
    """A grub.cfg equivalent to what update-grub makes from GRUB_DEFAULTS: serial and console
    terminals, one entry per kernel (newest is the default), root by UUID, the serial console
    on the kernel line."""
    if not kernels:
        raise BuildError("no kernel with an initrd in /boot to write a GRUB entry for",
                         hint="the bootstrap stage installs linux-image-*; check its log")
    search = (f"search --no-floppy --fs-uuid --set=root --hint-bios={part_hint(lay)} {root_uuid}")
    extra = " ".join(x for x in (GRUB_DEFAULTS["GRUB_CMDLINE_LINUX"],
                                 GRUB_DEFAULTS["GRUB_CMDLINE_LINUX_DEFAULT"]) if x)
    lines = [
        "# Written by ironforge when the image was built; the guest's update-grub replaces it",
        "# with the same settings (/etc/default/grub).",
        "if [ -s $prefix/grubenv ]; then",
        "  load_env",
        "fi",
        "set default=0",
        f"set timeout={GRUB_DEFAULTS['GRUB_TIMEOUT']}",
        GRUB_DEFAULTS["GRUB_SERIAL_COMMAND"],
        f"terminal_input {GRUB_DEFAULTS['GRUB_TERMINAL']}",
        f"terminal_output {GRUB_DEFAULTS['GRUB_TERMINAL']}",
        "insmod part_gpt" if lay.table == "gpt" else "insmod part_msdos",
        "insmod ext2",
        search,
    ]
    # newest first, as grub-mkconfig's version sort puts them
    for v in sorted(kernels, key=kernel_version_key, reverse=True):
        lines += [
            f"menuentry '{os_name}, with Linux {v}' --class debian --class gnu-linux --class os {{",
            "  insmod gzio",
            "  " + search,
            f"  linux /boot/vmlinuz-{v} root=UUID={root_uuid} ro {extra}".rstrip(),
            f"  initrd /boot/initrd.img-{v}",
            "}",
        ]
    return "\n".join(lines) + "\n"


GRUBENV = b"# GRUB Environment Block\n"


def _grubenv() -> bytes:
    # grub-editenv's empty block: exactly 1024 bytes, padded with '#'
    return GRUBENV + b"#" * (1024 - len(GRUBENV))


def _mkimage(tree: Path, platform: str, cfg: str) -> bytes:
    """The guest's grub-mkimage, chrooted in its tree; returns the image bytes."""
    libdir = tree / "usr/lib/grub" / platform
    if not (libdir / "kernel.img").is_file():
        pkg = "grub-efi-amd64" if platform == "x86_64-efi" else "grub-pc"
        raise BuildError(f"the image has no GRUB for {platform} (/usr/lib/grub/{platform}, from {pkg})",
                         hint=f"the bootstrap installs {pkg}; check its package list and log")
    work = tree / "run" / "ironforge-grub"
    work.mkdir(parents=True, exist_ok=True)
    try:
        (work / "load.cfg").write_text(cfg)
        out = "/run/ironforge-grub/core"
        proc = hostproc.run(
            [tools.require("chroot"), str(tree), "grub-mkimage", "-O", platform,
             "-o", out, "-c", "/run/ironforge-grub/load.cfg", "-p", "/boot/grub",
             *CORE_MODULES[platform]],
            what=f"grub-mkimage ({platform}) in the image's root", timeout=MKIMAGE_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise BuildError(f"grub-mkimage ({platform}) failed (exit {proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()[-600:]}")
        return (work / "core").read_bytes()
    finally:
        # nothing of ours may end up in the root filesystem
        shutil.rmtree(work, ignore_errors=True)


def _copy_modules(tree: Path, platform: str) -> None:
    """/usr/lib/grub/<platform> → /boot/grub/<platform>: what the core image loads at boot."""
    src = tree / "usr/lib/grub" / platform
    dst = tree / "boot/grub" / platform
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        if p.is_file() and not p.is_symlink() and (p.suffix in (".mod", ".lst", ".o") or p.name == "modinfo.sh"):
            shutil.copy2(p, dst / p.name)


def prepare_tree(tree: Path, firmware: str, lay: Layout, root_uuid: str, kernels: list[str]) -> Prepared:
    """Everything GRUB needs inside the root tree, before the filesystem is made from it."""
    platform = platform_for(firmware)
    cfg_text = load_cfg(root_uuid, lay)
    core = _mkimage(tree, platform, cfg_text)
    _copy_modules(tree, platform)
    grub = tree / "boot/grub"
    # What grub-install leaves beside the modules. Not decoration: Debian's grub-pc postinst
    # re-runs grub-install on an upgrade only when /boot/grub/i386-pc/core.img exists (GRUB
    # looks installed); without it an upgraded GRUB would never reach the disk again. (The
    # grub-efi-amd64 postinst goes by /boot/efi/EFI/debian, which a removable-path install never
    # made, with grub-install either: its BOOTX64.EFI stays with the modules it was built with.)
    (grub / platform / "load.cfg").write_text(cfg_text)
    (grub / platform / ("core.efi" if platform == "x86_64-efi" else "core.img")).write_bytes(core)
    if platform == "i386-pc":
        shutil.copy2(tree / "usr/lib/grub/i386-pc/boot.img", grub / platform / "boot.img")
    cfg = grub_cfg(root_uuid, lay, kernels)
    (grub / "grub.cfg").write_text(cfg)
    os.chmod(grub / "grub.cfg", 0o444)      # as grub-mkconfig leaves it
    env = grub / "grubenv"
    if not env.exists():
        env.write_bytes(_grubenv())
    boot_img = (tree / "usr/lib/grub/i386-pc/boot.img").read_bytes() if platform == "i386-pc" else b""
    return Prepared(platform, core, boot_img, cfg)


def core_location(lay: Layout, core_len: int) -> int:
    """The sector the BIOS core image starts at: after the MBR, or the BIOS boot partition."""
    bios_boot = lay.get("bios_boot")
    if lay.table == "gpt":
        if bios_boot is None:
            raise BuildError("a BIOS boot from a GPT disk needs a BIOS boot partition")
        start, room = bios_boot.start // SECTOR, bios_boot.size
    else:
        first = min(p.start for p in lay.partitions)
        start, room = 1, first - SECTOR
    if core_len > room:
        raise BuildError(f"GRUB's core image ({core_len} bytes) does not fit in the {room} bytes "
                         "before the first partition")
    return start


def patch_boot_sector(mbr: bytes, boot_img: bytes, core_sector: int) -> bytes:
    """boot.img's code over the MBR's first 440 bytes (disk id and partition table kept), told
    where the core image is; the drive-check jump is NOPed as grub-bios-setup does for a hard
    disk (some BIOSes pass a wrong drive number)."""
    if len(mbr) != SECTOR or len(boot_img) != SECTOR or boot_img[510:512] != b"\x55\xaa":
        raise BuildError("GRUB's boot.img is not a 512-byte boot sector")
    out = bytearray(boot_img[:BOOT_CODE_END] + mbr[BOOT_CODE_END:])
    out[KERNEL_SECTOR_AT:KERNEL_SECTOR_AT + 8] = struct.pack("<Q", core_sector)
    out[DRIVE_CHECK_AT:DRIVE_CHECK_AT + 2] = b"\x90\x90"
    out[510:512] = b"\x55\xaa"
    return bytes(out)


def patch_core(core: bytes, core_sector: int) -> bytes:
    """diskboot.img's first blocklist entry: the rest of the core image, contiguous after its
    first sector."""
    sectors = (len(core) + SECTOR - 1) // SECTOR
    padded = bytearray(core + b"\0" * (sectors * SECTOR - len(core)))
    padded[BLOCKLIST_AT:SECTOR] = struct.pack("<QHH", core_sector + 1, sectors - 1, KERNEL_SEGMENT)
    return bytes(padded)


def install_boot_blocks(raw: Path, boot_img: bytes, core: bytes, lay: Layout) -> int:
    """BIOS: boot sector and core image into the raw disk file; returns the core's sector."""
    start = core_location(lay, len(core))
    with open(raw, "r+b") as f:
        mbr = f.read(SECTOR)
        f.seek(0)
        f.write(patch_boot_sector(mbr, boot_img, start))
        f.seek(start * SECTOR)
        f.write(patch_core(core, start))
    return start


def _mtools(cmd: list[str], what: str, epoch: int | None) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")     # our FAT is fresh; no geometry nagging
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(int(epoch))    # file times in the FAT, where mtools honours it
    proc = hostproc.run(cmd, what=what, timeout=MTOOLS_TIMEOUT, env=env, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-400:]}")


def install_efi(raw: Path, core: bytes, lay: Layout, workdir: Path, epoch: int | None = None) -> None:
    """UEFI: the core image as \\EFI\\BOOT\\BOOTX64.EFI in the ESP (FAT at its offset in ``raw``)."""
    esp = lay.get("esp")
    if esp is None:
        raise BuildError("a UEFI image needs an ESP")
    image = f"{raw}@@{esp.start}"
    loader = workdir / "BOOTX64.EFI"
    loader.write_bytes(core)
    _mtools([tools.require("mmd"), "-i", image, "::/EFI", "::/EFI/BOOT"], "mmd (ESP folders)", epoch)
    _mtools([tools.require("mcopy"), "-i", image, str(loader), "::/EFI/BOOT/BOOTX64.EFI"],
            "mcopy (EFI loader into the ESP)", epoch)
    loader.unlink()


def finish(raw: Path, prep: Prepared, lay: Layout, workdir: Path, epoch: int | None = None) -> dict:
    """After the filesystems are written into ``raw``: the boot blocks (BIOS) or the ESP's
    loader (UEFI). Returns what the manifest records."""
    if prep.platform == "x86_64-efi":
        install_efi(raw, prep.core, lay, workdir, epoch)
        return {"platform": prep.platform, "core_bytes": len(prep.core), "loader": "/EFI/BOOT/BOOTX64.EFI"}
    start = install_boot_blocks(raw, prep.boot_img, prep.core, lay)
    return {"platform": prep.platform, "core_bytes": len(prep.core), "core_sector": start}
