"""Container root filesystems with no kernel and no bootloader, derived from ironforge's own
Debian 12 bootstrap tarball (tests/linux_bootstrap_support.py, already in the shared cache: no
extra mmdebstrap run, no download).

What a container image lacks (OpenVZ's V2P exclude list, Docker/LXC images): the kernel packages
and /boot, /lib/modules, GRUB, initramfs-tools, an fstab, a network configuration for a NIC. They
are removed the way dpkg would leave a system that never had them: their files (by dpkg's own
.list files), their info files and their status stanzas, and their trigger interests. The
container also carries a machine-id of its own, as a running container would.

Cached in the shared test cache under a key of the bootstrap artifact's key and this module's
source (as tests/convert_fixtures.py does), so a warm machine reuses it and an edit rebuilds it.
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
from pathlib import Path

import fixture_cache
from shared_cache import cache_root

# What a container does not have; prefixes of package names (dpkg status stanzas)
STRIP_PACKAGES = re.compile(r"^(linux-image-.*|linux-base|grub-.*|grub2-common|initramfs-tools(-core)?|"
                            r"klibc-utils|libklibc|os-prober)$")
STRIP_PATHS = ("boot/", "usr/lib/modules/", "lib/modules/", "vmlinuz", "vmlinuz.old", "initrd.img",
               "initrd.img.old", "etc/default/grub", "etc/initramfs-tools/", "etc/initramfs-tools", "etc/systemd/network/80-ironforge-dhcp.network",
               "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
               "etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service",
               "etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
               "var/lib/dpkg/triggers/update-initramfs")
CONTAINER_MACHINE_ID = "0123456789abcdef0123456789abcdef\n"
FSTAB = "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"
MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _norm(name: str) -> str:
    n = posixpath.normpath(name.lstrip("/"))
    return "" if n == "." else n


def _canon(path: str) -> str:
    """A dpkg .list path as the merged-/usr tree stores it (/lib/x -> usr/lib/x)."""
    n = _norm(path)
    top = n.split("/", 1)[0]
    return f"usr/{n}" if top in MERGED and "/" in n else n


def _stripped(n: str) -> bool:
    """A STRIP_PATHS member: the exact name, or anything inside a folder entry (the folder stays)."""
    return any(n.startswith(p) if p.endswith("/") else n == p for p in STRIP_PATHS)


def _stanzas(status: str) -> list[tuple[str, str]]:
    out = []
    for st in status.strip("\n").split("\n\n"):
        m = re.search(r"^Package: (\S+)", st, re.M)
        out.append((m.group(1) if m else "", st))
    return out


def strip(src: Path, dst: Path) -> dict:
    """Write ``dst``: ``src`` without the STRIP_PACKAGES (files, dpkg records) and STRIP_PATHS."""
    with tarfile.open(src) as t:
        status = t.extractfile("./var/lib/dpkg/status").read().decode()
        gone = sorted({p for p, _ in _stanzas(status) if STRIP_PACKAGES.match(p)})
        listed: set[str] = set()
        for m in t.getmembers():
            n = _norm(m.name)
            if n.startswith("var/lib/dpkg/info/") and n.endswith(".list"):
                pkg = n.rsplit("/", 1)[-1][:-5].split(":")[0]
                if pkg in gone:
                    listed.update(t.extractfile(m).read().decode().splitlines())
        # dpkg lists folders too (/lib, shared with every package): only leaves go
        folders = {posixpath.dirname(x) for x in listed}
        files = {_canon(x) for x in listed - folders}
        new_status = "\n\n".join(st for p, st in _stanzas(status) if p not in gone) + "\n"
        triggers = "".join(ln + "\n" for ln in t.extractfile("./var/lib/dpkg/triggers/File").read().decode().splitlines()
                           if ln.split()[-1].split("/")[0] not in gone)
        replace = {"var/lib/dpkg/status": new_status, "var/lib/dpkg/triggers/File": triggers,
                   "etc/machine-id": CONTAINER_MACHINE_ID, "etc/fstab": FSTAB}
        dropped = 0
        with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as out:
            for m in t.getmembers():
                n = _norm(m.name)
                info_pkg = n.rsplit("/", 1)[-1].split(".")[0].split(":")[0] \
                    if n.startswith("var/lib/dpkg/info/") else None
                if (n in files and not m.isdir()) or info_pkg in gone or _stripped(n):
                    dropped += 1
                    continue
                if n in replace:
                    data = replace[n].encode()
                    m.size = len(data)
                    out.addfile(m, io.BytesIO(data))
                elif m.isfile():
                    out.addfile(m, t.extractfile(m))
                else:
                    out.addfile(m)
    return {"packages_removed": gone, "members_dropped": dropped}


def container(arch: str) -> Path:
    """A Debian 12 container rootfs tarball for ``arch`` (amd64, i386), built once per machine."""
    from linux_bootstrap_support import build
    base = build(f"debian-12-{arch}").artifacts["bootstrap"]
    d = cache_root() / "container-fixtures" / fixture_cache.key(base.key, __file__)
    out = d / f"container-{arch}.tar"
    fixture_cache.built_once(d, out, lambda tmp: strip(base.path("rootfs"), tmp / out.name))
    return out


# A Debian guest whose only kernel cannot boot from virtio: the Xen PV fixture with its Debian
# kernel packages purged (by its own dpkg, in the appliance) and a Xen-only kernel's files left in
# their place, versioned to sort above the release's kernel, without an initramfs (a Xen PV kernel
# with its front-ends built in boots without one).
XEN_ONLY_VERSION = "6.9.0-xen"


def _xen_only_layout(g) -> None:
    from builder.host import guest_os
    with guest_os.opened(g, what="xen-only fixture", want_type="linux", trim_after=False):
        g.sh("DEBIAN_FRONTEND=noninteractive dpkg --purge --force-depends "
             "$(dpkg-query -W -f='${Package}\\n' 'linux-image-*') 2>&1")
        v = XEN_ONLY_VERSION
        g.write(f"/boot/vmlinuz-{v}", b"\x00stand-in: a Xen PV kernel image\n")
        g.write(f"/boot/config-{v}", b"CONFIG_X86_64_XEN=y\nCONFIG_XEN_BLKDEV_FRONTEND=y\n")
        g.mkdir_p(f"/lib/modules/{v}/kernel/drivers/block")
        g.write(f"/lib/modules/{v}/modules.dep", b"kernel/drivers/block/xen-blkfront.ko:\n")


def xen_only(arch: str = "amd64") -> Path:
    """The Xen PV fixture with only a Xen-PV-only kernel (qcow2), built once per machine."""
    from convert_fixtures import xen
    base = xen(arch)
    d = cache_root() / "container-fixtures" / fixture_cache.key(str(base), __file__)
    img = d / f"xen-only-{arch}.qcow2"
    fixture_cache.built_once(d, img, lambda tmp: fixture_cache.edited_copy(base, tmp / img.name, _xen_only_layout,
                                                                          "xen-only fixture"))
    return img
