"""What a container root filesystem is, read on the host from the import's clean rootfs.tar (our
own re-written tar: no devices, no links out), in one streaming pass, nothing extracted: distro
and release (os-release), architecture (the dpkg package's own), installed packages, kernels
and bootloader present. A container has no disk, so no libguestfs launch is needed.
"""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path

from builder import arch as archmod
from builder.linux import guestfacts, releases

MAX_TEXT = 1 << 20
MAX_STATUS = 64 << 20
WANTED = {"etc/os-release": MAX_TEXT, "usr/lib/os-release": MAX_TEXT, "etc/debian_version": MAX_TEXT,
          "var/lib/dpkg/status": MAX_STATUS, "etc/network/interfaces": MAX_TEXT}
# Debian's dpkg architecture names → the inspection names the rest of the conversion uses
DPKG_ARCH = {"amd64": "x86_64", "i386": "i386"}


def _norm(name: str) -> str:
    n = posixpath.normpath(name.lstrip("/"))
    return "" if n == "." else n


def read_tar(tarball: Path) -> tuple[dict[str, bytes], dict[str, str], list[str]]:
    """(texts of WANTED files, symlinks among them, every name under boot/ and lib/modules/)."""
    texts: dict[str, bytes] = {}
    links: dict[str, str] = {}
    names: list[str] = []
    with tarfile.open(tarball, "r|*") as t:
        for m in t:
            n = _norm(m.name)
            if (n.startswith("boot/") and n.count("/") == 1) or \
                    (n.startswith(("lib/modules/", "usr/lib/modules/")) and n.split("/")[-2] == "modules"):
                names.append(n)
            if n in WANTED:
                if m.issym():
                    links[n] = m.linkname
                elif m.isfile() and m.size <= WANTED[n]:
                    texts[n] = t.extractfile(m).read()
    return texts, links, names


def _text(texts: dict[str, bytes], links: dict[str, str], name: str) -> str | None:
    if name in links:     # /etc/os-release -> ../usr/lib/os-release: one hop, inside the tree
        name = _norm(posixpath.join(posixpath.dirname(name), links[name]))
    b = texts.get(name)
    return b.decode("utf-8", "replace") if b is not None else None


def collect(tarball: Path) -> dict:
    texts, links, names = read_tar(tarball)
    osr = guestfacts.parse_os_release(_text(texts, links, "etc/os-release")
                                      or _text(texts, links, "usr/lib/os-release") or "")
    status = _text(texts, links, "var/lib/dpkg/status")
    pkgs = guestfacts.parse_dpkg_status(status or "")
    dpkg_arch = next((p.arch for p in pkgs if p.name == "dpkg"), None)
    arch = DPKG_ARCH.get(dpkg_arch or "", dpkg_arch)
    distro = osr.get("ID") or ("debian" if "etc/debian_version" in texts else None)
    release = osr.get("VERSION_ID") or (_text(texts, links, "etc/debian_version") or "").split(".")[0].strip()
    rel = releases.find(release) if release else None
    vmlinuz = sorted(n[len("boot/vmlinuz-"):] for n in names if n.startswith("boot/vmlinuz-"))
    mods = sorted({n.rsplit("/", 1)[-1] for n in names if not n.startswith("boot/")})
    pkgnames = {p.name for p in pkgs}
    return {
        "type": "rootfs",
        "distro": distro, "version_id": osr.get("VERSION_ID"), "pretty_name": osr.get("PRETTY_NAME"),
        "release": rel.number if rel else None, "codename": rel.codename if rel else None,
        "arch": arch, "dpkg_arch": dpkg_arch,
        "bits": 32 if arch in archmod.ALIASES and archmod.normalise(arch) == archmod.I686 else 64,
        "package_format": "deb" if status is not None else None,
        "package_count": len(pkgs),
        "kernels": {"vmlinuz": vmlinuz, "modules": mods},
        "has": {k: k in pkgnames for k in ("initramfs-tools", "grub-pc", "grub-efi-amd64", "systemd-sysv",
                                             "udev", "ifupdown", "openssh-server")},
        "interfaces": _text(texts, links, "etc/network/interfaces"),
        "note": "a container root filesystem: made into a disk, a kernel and GRUB installed by convert",
    }
