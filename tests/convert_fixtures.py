"""Guests laid out for other hypervisors, generated from ironforge's own Debian 12 image (built
through the shared engine cache, tests/linux_bootstrap_support.py): no downloads.

Each fixture is a qcow2 overlay over the cached image, edited in ONE writable libguestfs launch,
then flattened into a standalone qcow2 (the import refuses backing files, as it must for a foreign
disk), and kept in the shared test cache under a key made of the base image's key and this
module's source, so a warm machine reuses it and an edit here rebuilds it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import fixture_cache
from shared_cache import cache_root

from builder.host import guest_os

XEN_MAC = "00:16:3e:12:34:56"
WANTS = "/etc/systemd/system/getty.target.wants"
# a STAND-IN for VMware's tools under their Debian name (fixture_cache.standin_deb)
STANDIN_TOOLS = "open-vm-tools"
STANDIN_VERSION = "2:12.2.0-1"
STANDIN_MARKER = fixture_cache.standin_marker(STANDIN_TOOLS)


def _xen_layout(g, deb: Path) -> None:
    """What a Debian 12 domU under Xen PV looks like (spec §7): /dev/xvda1 in fstab and root=,
    console=hvc0 with its getty, GRUB told not to use UUIDs, an initramfs configuration listing
    only Xen's block and net front-ends, eth0 configured by ifupdown and bound to its MAC; plus
    foreign guest tools (the stand-in package) for the removal to find."""
    with guest_os.opened(g, what="xen fixture", want_type="linux", trim_after=False) as guest:
        g.upload(str(deb), "/var/tmp/standin.deb")
        g.command(["dpkg", "-i", "/var/tmp/standin.deb"])
        g.rm("/var/tmp/standin.deb")
        uuid = g.vfs_uuid(guest.root)
        g.write("/etc/fstab", g.cat("/etc/fstab").replace(f"UUID={uuid}", "/dev/xvda1").encode())
        grub = re.sub(r"^GRUB_CMDLINE_LINUX=.*$", 'GRUB_CMDLINE_LINUX="console=hvc0 root=/dev/xvda1"',
                      g.cat("/etc/default/grub"), flags=re.M)
        g.write("/etc/default/grub", (grub + "GRUB_DISABLE_LINUX_UUID=true\n").encode())
        cfg = g.cat("/boot/grub/grub.cfg").replace(f"root=UUID={uuid}", "root=/dev/xvda1")
        cfg = re.sub(r"console=tty0 console=ttyS0,115200", "console=hvc0", cfg)
        g.write("/boot/grub/grub.cfg", cfg.encode())
        g.mkdir_p(WANTS)
        for name in g.ls(WANTS):
            if name.startswith("serial-getty@"):
                g.rm(f"{WANTS}/{name}")
        g.ln_s("/lib/systemd/system/serial-getty@.service", f"{WANTS}/serial-getty@hvc0.service")
        g.write("/etc/initramfs-tools/modules", b"# Xen PV front-ends only\nxen-blkfront\nxen-netfront\n")
        g.mkdir_p("/etc/network")
        g.write("/etc/network/interfaces",
                b"auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n")
        g.write("/etc/udev/rules.d/70-persistent-net.rules",
                f'SUBSYSTEM=="net", ACTION=="add", ATTR{{address}}=="{XEN_MAC}", NAME="eth0"\n'.encode())


def xen_amd64() -> Path:
    """The Xen PV fixture (amd64), built once per machine."""
    return xen("amd64")


def xen(arch: str) -> Path:
    """The Xen PV fixture from ironforge's Debian 12 image for ``arch`` (amd64, i386)."""
    from linux_bootstrap_support import build
    base = build(f"debian-12-{arch}").artifacts["drivers"]
    d = cache_root() / "convert-fixtures" / fixture_cache.key(base.key, __file__)
    img = d / f"xen-{arch}.qcow2"

    def make(tmp: Path) -> None:
        deb = fixture_cache.standin_deb(tmp, STANDIN_TOOLS, STANDIN_VERSION)
        fixture_cache.edited_copy(base.image, tmp / img.name, lambda g: _xen_layout(g, deb), "xen fixture")
        deb.unlink()
        shutil.rmtree(tmp / f"pkg-{STANDIN_TOOLS}")

    fixture_cache.built_once(d, img, make)
    return img


def _nvram_only_layout(g) -> None:
    """A UEFI guest installed the usual way (grub-install with NVRAM entries): its loader only in
    its vendor folder, \\EFI\\debian\\grubx64.efi, and no \\EFI\\BOOT fallback. Its NVRAM entry
    stays with the source hypervisor, so on a new VM nothing finds the loader until the conversion
    makes the fallback."""
    with guest_os.opened(g, what="uefi fixture", want_type="linux", trim_after=False):
        boot, vendor = "/boot/efi/EFI/BOOT", "/boot/efi/EFI/debian"
        names = {n.upper(): n for n in g.ls(boot)}
        g.mkdir_p(vendor)
        g.cp(f"{boot}/{names['BOOTX64.EFI']}", f"{vendor}/grubx64.efi")
        for n in names.values():
            if n.upper() != "BOOTX64.EFI":
                g.cp(f"{boot}/{n}", f"{vendor}/{n}")
        g.rm_rf(boot)


def uefi_nvram_only() -> Path:
    """ironforge's Debian 12 amd64 UEFI image (GPT, ESP) without the fallback loader (qcow2)."""
    from linux_bootstrap_support import build, variant
    base = build(variant("debian-12-amd64", "debian-12-amd64-uefi", firmware="uefi",
                         disk__partition_table="gpt")).artifacts["drivers"]
    d = cache_root() / "convert-fixtures" / fixture_cache.key(base.key, __file__)
    img = d / "uefi-nvram-only-amd64.qcow2"
    fixture_cache.built_once(d, img, lambda tmp: fixture_cache.edited_copy(base.image, tmp / img.name,
                                                                          _nvram_only_layout, "uefi fixture"))
    return img
