"""What inspection reads from a mounted Linux guest: identity, firmware, bootloader, kernels,
foreign tools, consoles, network, and the texts of every file a fix-up may rewrite.

One function over a libguestfs handle whose guest is mounted (``builder.host.guest_os``), used
by the read-only ``inspect`` stage and again by ``convert`` on its writable overlay, so both see
the same bytes. Every read is bounded: the guest is hostile input.
"""

from __future__ import annotations

import re

from builder.linux import guestfacts, initramfs
from builder.linux.diskimage import BIOS_BOOT_GUID, GPT_TYPES
from converters.linux import console, devices, network, tools

MAX_TEXT = 1 << 20          # a config file over 1 MiB is not one we rewrite
MAX_DIR_ENTRIES = 200

ESP_GUID = GPT_TYPES["esp"]

FILES = ("/etc/fstab", "/etc/default/grub", "/etc/kernel/cmdline", "/boot/grub/grub.cfg",
         "/boot/grub/menu.lst", "/boot/grub2/grub.cfg", "/etc/sysconfig/grub", "/boot/grub/device.map",
         "/boot/grub2/device.map", "/etc/inittab", "/etc/securetty", "/etc/initramfs-tools/modules",
         "/etc/initramfs-tools/initramfs.conf", "/etc/initramfs-tools/conf.d/resume",
         "/etc/network/interfaces", *network.RULES, network.LINK)
DIRS = ("/etc/default/grub.d", "/boot/loader/entries", "/etc/network/interfaces.d", "/etc/netplan",
        "/etc/NetworkManager/system-connections", "/etc/systemd/network")

VIRTIO = ("virtio_blk", "virtio_net", "virtio_pci", "virtio_scsi")
_XEN_ONLY = re.compile(r"^CONFIG_X86(?:_64)?_XEN=y", re.M)


def read_text(g, path: str) -> str | None:
    if not g.is_file(path, followsymlinks=True):
        return None
    if g.filesize(path) > MAX_TEXT:
        return None
    return bytes(g.read_file(path)).decode("utf-8", "replace")


def read_files(g) -> dict[str, str | None]:
    files = {p: read_text(g, p) for p in FILES}
    for d in DIRS:
        if g.is_dir(d, followsymlinks=True):
            for name in sorted(g.ls(d))[:MAX_DIR_ENTRIES]:
                files[f"{d}/{name}"] = read_text(g, f"{d}/{name}")
    return files


def getty_links(g) -> dict[str, str]:
    out = {}
    if g.is_dir(console.WANTS):
        for name in g.ls(console.WANTS):
            p = f"{console.WANTS}/{name}"
            if g.is_symlink(p):
                out[p] = g.readlink(p)
    return out


def firmware(g) -> dict:
    """UEFI = a GPT ESP and no BIOS-boot partition (virt-v2v's rule)."""
    esp = bios_boot = False
    tables = {}
    for dev in g.list_devices():
        try:
            tables[dev] = g.part_get_parttype(dev)
        except Exception:  # noqa: BLE001 - a whole-disk filesystem has no table
            tables[dev] = None
    for part in g.list_partitions():
        dev = g.part_to_dev(part)
        if tables.get(dev) != "gpt":
            continue
        guid = g.part_get_gpt_type(dev, g.part_to_partnum(part)).upper()
        esp |= guid == ESP_GUID
        bios_boot |= guid == BIOS_BOOT_GUID
    return {"firmware": "uefi" if esp and not bios_boot else "bios", "partition_tables": tables,
            "esp": esp, "bios_boot_partition": bios_boot}


def kernels(g) -> list[dict]:
    """Each /lib/modules/<v>: virtio-capable (modules or built in), or Xen-PV-only."""
    out = []
    if not g.is_dir("/lib/modules"):
        return out
    for v in sorted(g.ls("/lib/modules"))[:MAX_DIR_ENTRIES]:
        base = f"/lib/modules/{v}"
        if not g.is_dir(base):
            continue
        known = initramfs.module_names((read_text(g, f"{base}/modules.dep") or "").splitlines()) \
            | initramfs.builtin_modules(g, v)
        config = read_text(g, f"/boot/config-{v}") or ""
        virtio = [m for m in VIRTIO if m in known or f"CONFIG_{m.upper()}=" in config]
        out.append({"version": v, "vmlinuz": g.is_file(f"/boot/vmlinuz-{v}", followsymlinks=True),
                    "initrd": g.is_file(f"/boot/initrd.img-{v}", followsymlinks=True),
                    "virtio": virtio, "virtio_capable": "virtio_blk" in virtio,
                    "xen_pv_only": bool(_XEN_ONLY.search(config)) and "virtio_blk" not in virtio})
    return out


def installed_packages(g, root: str, package_format: str) -> list[str]:
    if package_format == "deb":
        status = read_text(g, "/var/lib/dpkg/status") or ""
        return [p.name for p in guestfacts.parse_dpkg_status(status)]
    if package_format == "rpm":
        return sorted({a["app2_name"] for a in g.inspect_list_applications2(root)})
    return []


def bootloader(files: dict[str, str | None], fw: str) -> str:
    if files.get("/boot/grub/grub.cfg") is not None or files.get("/boot/grub2/grub.cfg") is not None:
        return "grub2-efi" if fw == "uefi" else "grub2"
    if files.get("/boot/grub/menu.lst") is not None:
        return "grub1"
    return "none"


ESP = "/boot/efi"
FALLBACK = {"x86_64": "BOOTX64.EFI", "i386": "BOOTIA32.EFI", "i686": "BOOTIA32.EFI"}


def esp(g, arch: str) -> dict:
    """The EFI system partition as the guest mounts it: whether the firmware's fallback loader
    (\\EFI\\BOOT\\BOOT<arch>.EFI) is there, the vendor folders, and whether GRUB's EFI modules
    are installed to make one. Empty for a guest without /boot/efi."""
    if not g.is_dir(ESP):
        return {}
    efi = f"{ESP}/EFI"
    vendors = sorted(n for n in (g.ls(efi) if g.is_dir(efi) else []) if n.upper() != "BOOT")[:MAX_DIR_ENTRIES]
    name = FALLBACK.get(arch)
    return {"fallback": name, "fallback_present": bool(name) and fallback_present(g, name), "vendors": vendors,
            "grub_efi_modules": bool(g.is_dir("/usr/lib/grub/x86_64-efi")) if arch == "x86_64" else False}


def fallback_present(g, name: str) -> bool:
    """``name`` in \\EFI\\BOOT of the mounted ESP. FAT is case-blind, libguestfs's listing is not."""
    boot = f"{ESP}/EFI/BOOT"
    return bool(g.is_dir(boot)) and name.upper() in (n.upper() for n in g.ls(boot))


def fstab_entries(text: str | None) -> list[dict]:
    out = []
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) >= 2 and not f[0].startswith("#"):
            out.append({"spec": f[0], "mountpoint": f[1], "type": f[2] if len(f) > 2 else None})
    return out


def cmdline_consoles(files: dict[str, str | None]) -> list[str]:
    found = set()
    for p, t in files.items():
        if t and devices.holds_cmdline(p):
            found.update(re.findall(r"\bconsole=([A-Za-z0-9]+)", t))
    return sorted(found)


def collect(g, root: str) -> dict:
    """Every fact, from a guest mounted at / (read-only is enough)."""
    pkgfmt = g.inspect_get_package_format(root)
    files = read_files(g)
    links = getty_links(g)
    fw = firmware(g)
    uuids = {}
    filesystems = g.list_filesystems()
    mountpoints = g.inspect_get_mountpoints(root)
    for dev, fstype in filesystems.items():
        if fstype not in ("unknown", ""):
            try:
                u = g.vfs_uuid(dev)
            except Exception:  # noqa: BLE001 - a filesystem without a UUID
                u = ""
            if u:
                uuids[dev] = u
    installed = installed_packages(g, root, pkgfmt)
    ks = kernels(g)
    arch = g.inspect_get_arch(root)
    net_edits, net_decision = network.plan(files, [])
    return {
        "type": "linux",
        "distro": g.inspect_get_distro(root),
        "version": f"{g.inspect_get_major_version(root)}.{g.inspect_get_minor_version(root)}",
        "product_name": g.inspect_get_product_name(root),
        "arch": arch, "bits": 32 if arch in ("i386", "i486", "i586", "i686", "armv7l") else 64,
        "package_format": pkgfmt,
        "root": root,
        "root_is_lv": bool(g.is_lv(root)),
        "mountpoints": mountpoints,
        # what the initramfs must mount: / (and /usr, which initramfs-tools mounts too)
        "boot_fstypes": sorted({filesystems.get(dev, "unknown")
                                for mp, dev in mountpoints.items() if mp in ("/", "/usr")}),
        "uuids": uuids,
        **fw,
        "esp_files": esp(g, arch) if fw["firmware"] == "uefi" else {},
        "bootloader": bootloader(files, fw["firmware"]),
        "fstab": fstab_entries(files.get("/etc/fstab")),
        "kernels": ks,
        "foreign_tools": tools.foreign(installed),
        "parallels_tools": bool(g.is_file(tools.PARALLELS_UNINSTALL)),     # not a symlink out of the guest
        "consoles": {"cmdline": cmdline_consoles(files),
                     "gettys": sorted(p.rsplit("/", 1)[-1] for p in links)},
        "network": {"interfaces": net_decision["ifupdown"], "other_config": net_decision["other_config"],
                    "bound": net_decision["bound"],
                    "mac_bound_rules": [e.path for e in net_edits if e.path in network.RULES],
                    "netplan": any(p.startswith("/etc/netplan/") for p in files),
                    "networkmanager": any(p.startswith("/etc/NetworkManager/") for p in files),
                    "networkd": any(p.startswith("/etc/systemd/network/") for p in files)},
        "has_update_grub": g.is_file("/usr/sbin/update-grub", followsymlinks=True),
        "has_grub_pc": g.is_dir("/usr/lib/grub/i386-pc"),
        "has_update_initramfs": g.is_file("/usr/sbin/update-initramfs", followsymlinks=True),
        "installed_packages": installed,
        "files": files,
        "getty_links": links,
    }


def public(facts: dict) -> dict:
    """The facts for JSON output and the manifest: file texts and the package list left out."""
    return {k: v for k, v in facts.items() if k not in ("files", "installed_packages", "getty_links")}
