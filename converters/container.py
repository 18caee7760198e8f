"""A container root filesystem becomes a bootable KVM guest, with the builder's own disk maker
(builder/linux/diskimage.py, rootfs.py, bootloader.py, imagereport.py) and ONE libguestfs launch.

On the host, no guest code run:
  * apt, with a private configuration and the guest's dpkg status, resolves and downloads what the
    guest lacks to boot: the release's kernel (linux-image-amd64 / linux-image-686-pae, from
    builder/linux/releases.py), initramfs-tools, GRUB (grub-pc, or grub-efi-amd64 for UEFI), and
    the base the builder's images boot with (systemd-sysv, udev, kmod, e2fsprogs, networkd DHCP,
    systemd-resolved); every .deb checked from the archive's signed InRelease down
    (converters/linux/packages.py);
  * the tree is unpacked from the import's clean rootfs.tar and prepared as a built image is: fstab
    by UUID, an empty machine-id (systemd makes a new one at first boot), no SSH host keys (made
    at first boot), no apt lists, a systemd-networkd DHCP unit for every wired NIC; the .debs and
    the install script are put in the tree;
  * partitions (MBR or GPT, BIOS or UEFI) and ext4 written straight into a raw file, then qcow2.

In the launch, by the guest's own dpkg: the packages in apt's order (INITRD=No, so the initramfs
is built once, afterwards), the virtio modules in /etc/initramfs-tools/modules, update-initramfs,
systemd-networkd enabled, GRUB's serial defaults, grub-install + update-grub with grub.cfg checked
for root=UUID=, the image report read back, fstrim.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from builder import arch as archmod
from builder import settings
from builder.errors import BuildError, UsageError
from builder.host.guestfs_session import Drive, guest_sh, session
from builder.linux import bootloader, diskimage, imagereport, releases, rootfs
from builder.linux.mmdebstrap import NETWORK_UNIT, NETWORK_UNIT_PATH
from builder.linux.packages import Target, boot_packages
from builder.stages.disk import fstab_entries
from converters.linux import kernel, packages

GiB = 1024 ** 3
# the installed kernel, initramfs and GRUB take ~400 MB; ext4's own metadata ~5 %
ROOM = 1 * GiB


def target(facts: dict, firmware: str) -> Target:
    """The release and arch the container is, or a clear refusal (exit 2) when ironforge cannot
    give it a kernel."""
    if facts.get("package_format") != "deb" or facts.get("distro") not in ("debian",):
        raise UsageError(f"the container is {facts.get('pretty_name') or facts.get('distro') or 'of an unknown distribution'}"
                         f" ({'dpkg' if facts.get('package_format') == 'deb' else 'no dpkg database'}): ironforge installs "
                         "a kernel only into Debian containers",
                         hint="convert a Debian 12/13 container, or install a kernel, initramfs and GRUB in "
                              "the container yourself and convert its disk image instead")
    rel = releases.find(facts.get("release") or "")
    if rel is None:
        raise UsageError(f"the container is Debian {facts.get('version_id') or '(release unknown)'}, not one of "
                         f"the releases ironforge builds ({', '.join(r.number for r in releases.RELEASES)})",
                         hint="upgrade the container to a supported release first")
    arch = facts.get("arch")
    if arch not in archmod.ALIASES:
        raise UsageError(f"the container's architecture is {facts.get('dpkg_arch')!r}; ironforge converts amd64 "
                         "and i386 containers")
    t = Target(release=rel.number, arch=archmod.normalise(arch), firmware=firmware)
    boot_packages(t)      # refuses Debian 13 i386 (no kernel) and 32-bit UEFI, with the reason
    return t


def plan(facts: dict, firmware: str = "bios", table: str = "mbr") -> list[str]:
    """What convert does to a container, one line each (the dry run prints these)."""
    t = target(facts, firmware)
    kernel = releases.BY_NUMBER[t.release].kernel(t.arch)
    return [f"container: Debian {t.release} {facts.get('dpkg_arch')} root filesystem ({facts.get('package_count')} packages)",
            f"disk: {table.upper()}, {firmware.upper()}, ext4 made on the host from the tree, fstab by UUID",
            f"packages: {', '.join(boot_packages(t))} resolved by apt against the container's dpkg status "
            f"(only the missing ones are fetched, signature-checked); kernel {kernel}",
            "install: the guest's dpkg in the appliance, in apt's order; initramfs built once with "
            + ", ".join(settings.VIRTIO_MODULES),
            f"network: systemd-networkd DHCP on every wired NIC ({NETWORK_UNIT_PATH})",
            "identity: machine-id emptied (new at first boot), SSH host keys removed (new at first boot)",
            f"grub: grub-install + update-grub, {bootloader.SERIAL_CMDLINE}, every entry root=UUID="]


def _ifupdown_lo_only(tree: Path) -> str | None:
    """ifupdown stanzas for other interfaces (an OpenVZ venet0, a veth) would fight networkd for
    the NIC or wait for a device that no longer exists: keep only the loopback."""
    text = rootfs.read(tree, "etc/network/interfaces")
    if text is None:
        return None
    names = {ln.split()[1] for ln in text.splitlines()
             if ln.split()[:1] in (["iface"], ["auto"], ["allow-hotplug"]) and len(ln.split()) > 1}
    if names <= {"lo"}:
        return None
    rootfs.write(tree, "etc/network/interfaces",
                 "# Written by ironforge: the container's interfaces are gone; systemd-networkd\n"
                 "# configures the VM's NIC by DHCP (" + NETWORK_UNIT_PATH + ").\n"
                 "auto lo\niface lo inet loopback\n")
    return f"/etc/network/interfaces: dropped {', '.join(sorted(names - {'lo'}))} (the container's interfaces)"


def _disk_size(requested: int, tree_bytes: int) -> int:
    need = -(-(int(tree_bytes * 1.1) + ROOM) // GiB) * GiB
    return max(requested, need)


def _tree_bytes(tree: Path) -> int:
    n = 0
    for dirpath, _dirs, files in os.walk(tree):
        for f in files:
            try:
                n += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return n


def _guest(g, lay, ids, firmware: str, got: packages.Fetched, log, timings: dict) -> dict:
    t0 = time.monotonic()
    g.mount(lay.root.device, "/")
    esp = lay.get("esp")
    if esp is not None:
        g.mkdir_p("/boot/efi")
        g.mount(esp.device, "/boot/efi")
    # ext4: the root filesystem this module makes (its softdeps, crc32c, come with it)
    done = kernel.install(g, got, settings.VIRTIO_MODULES, log, first_build=("ext4",))
    timings["install_s"] = round(time.monotonic() - t0, 2)

    # networkd's own enablement (its socket and wait-online too), by the guest's systemctl
    guest_sh(g, "systemctl enable systemd-networkd.service 2>&1", limit=300, what="systemctl enable systemd-networkd")
    grub = g.cat("/etc/default/grub") if g.is_file("/etc/default/grub") else ""
    g.write("/etc/default/grub", rootfs.set_shell_vars(grub, bootloader.GRUB_DEFAULTS).encode())

    t0 = time.monotonic()
    cfg = bootloader.install(g, firmware, str(ids.root), logger=log)
    timings["grub_s"] = round(time.monotonic() - t0, 2)
    done["grub_linux"] = [ln.strip() for ln in cfg.splitlines() if ln.strip().startswith("linux")]
    t0 = time.monotonic()
    report = imagereport.take(g)
    for mp in (["/boot/efi"] if esp is not None else []) + ["/"]:
        g.fstrim(mp)
    g.umount_all()
    timings["report_trim_s"] = round(time.monotonic() - t0, 2)
    return {"done": done, "image_report": report}


def convert(ctx, imp, facts: dict) -> tuple[dict[str, str], dict]:
    """The convert stage's work for a container; returns (files, data)."""
    r = ctx.recipe
    firmware = r.get("firmware", "bios")
    table = r.get("disk.partition_table", "mbr")
    t = target(facts, firmware)
    steps = plan(facts, firmware, table)
    for s in steps:
        ctx.log.info("plan: %s", s)
    timings: dict[str, float] = {}
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix=".container-", dir=ctx.workdir))
    try:
        tree = tmp / "root"
        t0 = time.monotonic()
        diskimage.extract(imp.path("rootfs"), tree)
        timings["extract_s"] = round(time.monotonic() - t0, 2)
        status = tree / "var/lib/dpkg/status"
        if status.is_symlink() or not status.is_file():
            raise BuildError("the container has no dpkg status file (/var/lib/dpkg/status)",
                             hint="a Debian container keeps its package database there")
        t0 = time.monotonic()
        got = packages.fetch(status, facts["dpkg_arch"], releases.BY_NUMBER[t.release].codename,
                             boot_packages(t), tmp / "apt", mirror=r.get("build.mirror", "http://deb.debian.org/debian"),
                             offline=ctx.offline)
        timings["apt_s"] = round(time.monotonic() - t0, 2)
        ctx.log.info("apt: %d packages to install: %s", len(got.installed), ", ".join(got.installed))

        size = _disk_size(int(r.get("disk.size", 4 * GiB)), _tree_bytes(tree))
        lay = diskimage.layout(size, table, firmware)
        ids = diskimage.ids_for(r.name)
        prepared = rootfs.prepare(tree, fstab_entries(lay, ids), bootloader.GRUB_DEFAULTS)
        rootfs.write(tree, NETWORK_UNIT_PATH.lstrip("/"), NETWORK_UNIT)
        note = _ifupdown_lo_only(tree)
        if note:
            notes.append(note)
        t0 = time.monotonic()
        raw = tmp / "disk.raw"
        diskimage.build_raw(raw, lay, ids, tree)
        shutil.rmtree(tree)
        image = ctx.workdir / "image.qcow2"
        diskimage.to_qcow2(raw, image)
        raw.unlink()
        timings["make_disk_s"] = round(time.monotonic() - t0, 2)

        t0 = time.monotonic()
        with session([Drive(image, "qcow2", readonly=False, discard="besteffort")], ctx.accel,
                     what="convert: container to VM", smp=min(2, os.cpu_count() or 1)) as g:
            timings["launch_s"] = round(time.monotonic() - t0, 2)
            guest = _guest(g, lay, ids, firmware, got, ctx.log, timings)
        timings["appliance_s"] = round(time.monotonic() - t0, 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kernel = releases.BY_NUMBER[t.release].kernel(t.arch)
    summary = steps + [f"installed {p}" for p in got.installed] + [f"note: {n}" for n in notes]
    conversion = {"os": "linux", "from": "container", "summary": summary,
                  "packages": got.to_dict(), "kernel_package": kernel,
                  "disk": {"partition_table": table, "firmware": firmware, "size": lay.size,
                           "root_uuid": str(ids.root),
                           "partitions": [{"name": p.name, "number": p.number, "start": p.start, "size": p.size}
                                          for p in lay.partitions]},
                  "prepared": prepared, "notes": notes, "done": guest["done"], "timings": timings}
    return {"image": "image.qcow2"}, {"conversion": conversion, "image_report": guest["image_report"]}
