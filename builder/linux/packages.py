"""What a Debian image needs to boot, per release, architecture and firmware.

The recipe lists only what the image wants on top (build.packages); the kernel, the boot loader
and what a systemd guest needs to reach ``running`` with DHCP on its NIC are added here, so a
recipe cannot forget them and a 32-bit recipe gets the 32-bit kernel without saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder import arch as archmod
from builder.errors import BuildError
from builder.linux import releases

# Every image: init, device manager, the initramfs generator, the root filesystem's tools, and
# the network stack. systemd-networkd ships in the systemd package (bookworm and trixie);
# systemd-resolved is separate and gives the DHCP-learned DNS servers a resolv.conf; dbus is
# what hostnamectl/timedatectl and networkd's bus API talk over.
BASE = ("systemd-sysv", "udev", "initramfs-tools", "zstd", "e2fsprogs", "kmod", "dbus",
        "systemd-resolved")


@dataclass(frozen=True)
class Target:
    """The facts that decide the package set: Debian release, internal arch, firmware."""

    release: str       # "12" | "13"
    arch: str          # "x86_64" | "i686"
    firmware: str      # "bios" | "uefi"

    @property
    def suite(self) -> str:
        return suite_for(self.release)

    @property
    def debian_arch(self) -> str:
        return archmod.family_word("debian", self.arch)


def suite_for(release: str) -> str:
    r = releases.BY_NUMBER.get(str(release).strip())
    if r is None:
        raise BuildError(f"Debian release {release!r} is not supported",
                         hint=f"use os.release = one of {', '.join(sorted(releases.BY_NUMBER))}")
    return r.codename


def kernel_for(t: Target) -> str | None:
    return releases.BY_NUMBER[t.release].kernel(t.arch) if t.release in releases.BY_NUMBER else None


def check_supported(t: Target) -> None:
    """Refuse combinations that cannot produce a bootable image, with the reason."""
    suite_for(t.release)
    if kernel_for(t) is None:
        raise BuildError(
            f"Debian {t.release} ({suite_for(t.release)}) has no i386 kernel: a 32-bit image "
            "cannot boot",
            hint="use arch = \"amd64\" for Debian 13, or os.release = \"12\" for a 32-bit image")
    if t.firmware not in ("bios", "uefi"):
        raise BuildError(f"firmware {t.firmware!r} is not supported", hint="use \"bios\" or \"uefi\"")
    if t.firmware == "uefi" and t.arch != archmod.X86_64:
        raise BuildError("UEFI images are built for 64-bit only (grub-efi-amd64)",
                         hint="use firmware = \"bios\" for a 32-bit image")


def boot_packages(t: Target) -> list[str]:
    """Packages the image needs to boot on ``t``, in a stable order."""
    check_supported(t)
    pkgs = [kernel_for(t)]
    if t.firmware == "uefi":
        # dosfstools: fsck.vfat for the ESP at boot
        pkgs += ["grub-efi-amd64", "dosfstools"]
    else:
        pkgs += ["grub-pc"]
    pkgs += list(BASE)
    return pkgs


def package_set(t: Target, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Boot packages then the recipe's own, without duplicates, order kept (stable cache keys)."""
    out: list[str] = []
    for p in [*boot_packages(t), *extra]:
        p = str(p).strip()
        if p and p not in out:
            out.append(p)
    return out
