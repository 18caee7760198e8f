"""A virtio-capable kernel for a Debian guest that has none (only Xen-PV-only kernels, or no
kernel with virtio_blk): the release's standard kernel package (builder/linux/releases.py),
fetched on the host by apt against the guest's own dpkg status (converters/linux/packages.py),
installed by the guest's dpkg inside the convert stage's one launch, its initramfs built once with
the virtio modules. The convert stage then plans again with the new kernel among the facts, so
the Debian default-kernel pin (converters/linux/fixups.default_kernel) points GRUB at it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Iterator

from builder import arch as archmod
from builder import settings
from builder.errors import BuildError
from builder.host.guestfs_session import guest_sh
from builder.linux import initramfs, releases
from converters.linux import packages

DEBDIR = "/var/cache/ironforge-debs"
INSTALL_LIMIT = 3600


def package_for(facts: dict) -> str | None:
    """The kernel package a Debian guest gets, or None when ironforge cannot give it one."""
    if facts.get("distro") != "debian" or facts.get("package_format") != "deb":
        return None
    rel = releases.find(str(facts.get("version", "")).split(".")[0])
    arch = facts.get("arch")
    if rel is None or arch not in archmod.ALIASES:
        return None
    return rel.kernel(arch)


# The initramfs a conversion builds: MODULES=list, the listed modules (the virtio set, in
# /etc/initramfs-tools/modules, and the root filesystem's) with their dependencies, plus what the
# guest's hooks add themselves (lvm2, mdadm, cryptsetup). MODULES=most copies every storage and
# filesystem driver the kernel has, which under TCG costs minutes (most of a Xen guest's whole
# conversion) for hardware this VM will never have. The setting lives only for the builds in
# ``list_build``: the guest's own later initramfs builds (a kernel upgrade) are its own setting.
FIRST_BUILD_CONF = "/etc/initramfs-tools/conf.d/90-ironforge-first-build"
FIRST_BUILD_MODULES = "/usr/share/initramfs-tools/modules.d/90-ironforge-first-build.conf"


@contextlib.contextmanager
def list_build(g, extra: tuple[str, ...] | None) -> Iterator[dict | None]:
    """Inside the block, initramfs-tools builds are MODULES=list with ``extra`` listed (None: the
    guest's own setting, untouched). Yields what to put in the report, or None."""
    if extra is None:
        yield None
        return
    for path, body in ((FIRST_BUILD_CONF, "MODULES=list\n"),
                       (FIRST_BUILD_MODULES, "".join(f"{m}\n" for m in extra))):
        g.mkdir_p(path.rsplit("/", 1)[0])
        g.write(path, f"# ironforge convert: this launch only (converters/linux/kernel.py)\n{body}".encode())
    try:
        yield {"modules": "list", "extra": list(extra)}
    finally:
        g.rm_f(FIRST_BUILD_CONF)
        g.rm_f(FIRST_BUILD_MODULES)


def root_modules(fstypes: list[str]) -> tuple[str, ...] | None:
    """The kernel modules mounting these filesystems needs (ext2/3/4 are all the ext4 driver), or
    None when one is not known here: then the guest keeps its own MODULES setting."""
    names = []
    for t in fstypes:
        m = "ext4" if t in ("ext2", "ext3", "ext4") else t if t in ("xfs", "btrfs", "f2fs", "jfs") else None
        if m is None:
            return None
        if m not in names:
            names.append(m)
    return tuple(names) or None


def install(g, got: packages.Fetched, modules=settings.VIRTIO_MODULES,
            log: logging.Logger | None = None, first_build: tuple[str, ...] | None = None) -> dict:
    """In a mounted, writable guest: the fetched .debs by the guest's dpkg in apt's order, the
    virtio modules configured, then ``update-initramfs -c`` once for every kernel the install
    brought that has none yet. ``first_build`` (the root filesystem's modules) makes those images MODULES=list:
    see FIRST_BUILD_CONF. Returns what was done, for the report."""
    log = log or logging.getLogger("ironforge.convert.kernel")
    done: dict = {"packages": got.to_dict()}
    if got.debs:
        g.mkdir_p(DEBDIR)
        for deb in got.debs.values():
            g.upload(str(deb), f"{DEBDIR}/{deb.name}")
        g.write(f"{DEBDIR}/install.sh", packages.dpkg_script(got.steps, DEBDIR).encode())
        log.info("in guest: dpkg installs %d packages", len(got.debs))
        out = guest_sh(g, f"sh {DEBDIR}/install.sh 2>&1", limit=INSTALL_LIMIT, what="dpkg in the guest")
        done["dpkg_tail"] = out.splitlines()[-20:]
        g.rm_rf(DEBDIR)
    text = g.cat(initramfs.MODULES_FILE) if g.is_file(initramfs.MODULES_FILE) else ""
    new, added = initramfs.with_modules(text, list(modules))
    if added:
        g.write(initramfs.MODULES_FILE, new.encode())
    done["initramfs_modules_added"] = added
    # only the kernels this install brought: a kernel the guest already had without an initramfs
    # (a Xen PV kernel with its front-ends built in) boots without one, and is not ours to change
    brought = set(new_kernel_versions(got))
    todo = [v for v in sorted(n[len("vmlinuz-"):] for n in g.ls("/boot") if n.startswith("vmlinuz-"))
            if v in brought and g.is_dir(f"/lib/modules/{v}") and not g.is_file(f"/boot/initrd.img-{v}")]
    with list_build(g, first_build if todo else None) as listed:
        if listed:
            done["first_initramfs"] = listed
        for v in todo:
            log.info("in guest: update-initramfs -c -k %s", v)
            guest_sh(g, f"update-initramfs -c -k {v} 2>&1", limit=initramfs.UPDATE_LIMIT,
                     what=f"update-initramfs -c -k {v} in the guest")
    done["initramfs_built"] = todo
    return done


def new_kernel_versions(got: packages.Fetched) -> list[str]:
    """Kernel versions the install brought (from linux-image-<version> package names)."""
    return [m.group(1) for s in got.steps if s.op == "unpack"
            for m in [re.match(r"^linux-image-(\d.*)$", s.package)] if m and not s.package.endswith("-unsigned")]


def status_copy(g, dest: Path) -> Path:
    """The guest's dpkg status, downloaded (bounded) for apt on the host."""
    path = "/var/lib/dpkg/status"
    if not g.is_file(path) or g.filesize(path) > packages.MAX_STATUS:
        raise BuildError("the guest's dpkg status file is missing or too large",
                         hint="a Debian guest keeps its package database in /var/lib/dpkg/status")
    g.download(path, str(dest))
    return dest
