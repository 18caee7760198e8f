"""A tiny Linux guest made from the host's own kernel and busybox, for self-tests and benchmarks.

It boots in seconds under TCG and needs no network: ``-kernel`` = the host's /boot/vmlinuz-<ver>, an
initramfs with busybox and the handful of modules it needs (virtio, ext4, qemu_fw_cfg) that mounts a
virtio disk as its root and ``switch_root``s into it; the disk's /sbin/init runs the very probe script
verification injects into real images (builder.runner.guest_probe), so a real boot exercises it.
Only for images we make ourselves: the host kernel is trusted, nothing here reads a guest.
"""

from __future__ import annotations

import gzip
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from builder.errors import MissingEnvironment
from builder.host.tools import require
from builder.linux.initrd import Member, newc_archive
from builder.runner import guest_probe

MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "qemu_fw_cfg", "crc32c_generic", "ext4")

_INITRAMFS_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m 2>/dev/null; done
echo "tiny initramfs: modules loaded, mounting /dev/vda"
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 /dev/vda /newroot || { echo "tiny initramfs: no root disk"; exit 1; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""

_DISK_INIT = """#!/bin/busybox sh
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "tiny guest: root is on $(awk '$2 == "/" {print $1}' /proc/mounts), running the ironforge probe"
exec /usr/local/sbin/ironforge-probe
"""


@dataclass(frozen=True)
class TinyGuest:
    arch: str
    kernel: Path
    initrd: Path
    disk: Path          # qcow2, ext4 root with busybox and the probe
    append: str

    def broken_append(self) -> str:
        """A command line that panics: no rdinit, no root device."""
        return "console=ttyS0,115200 rdinit=/nonexistent root=/dev/nowhere"


def host_kernel() -> tuple[str, Path, Path]:
    release = platform.release()
    kernel = Path(f"/boot/vmlinuz-{release}")
    moddir = Path(f"/lib/modules/{release}")
    if not kernel.exists() or not moddir.is_dir():
        candidates = sorted(Path("/boot").glob("vmlinuz-*"))
        for k in reversed(candidates):
            rel = k.name[len("vmlinuz-"):]
            if Path(f"/lib/modules/{rel}").is_dir():
                return rel, k, Path(f"/lib/modules/{rel}")
        raise MissingEnvironment("no host kernel with modules found (/boot/vmlinuz-* and /lib/modules/*)",
                                 hint="install it: apt-get install linux-image-amd64")
    if not os.access(kernel, os.R_OK):
        raise MissingEnvironment(f"{kernel} is not readable by this user")
    return release, kernel, moddir


def _module_order(moddir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Module files (relative to moddir) in load order, dependencies first; built-ins skipped."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[mod] = rest.split()
        base = Path(mod).name.split(".ko")[0]
        by_name[base] = mod
        by_name[base.replace("-", "_")] = mod
    order: list[str] = []

    def visit(mod: str):
        if mod in order:
            return
        for d in reversed(deps.get(mod, [])):
            visit(d)
        order.append(mod)

    for name in wanted:
        mod = by_name.get(name) or by_name.get(name.replace("_", "-"))
        if mod:  # not in modules.dep: built into the kernel (or absent; the boot will say)
            visit(mod)
    return order


def _uncompressed_kernel(bzimage: Path, dest: Path) -> Path:
    """The ELF vmlinux inside an XZ bzImage (QEMU boots it through its PVH entry point).

    Decompressing the kernel under TCG costs seconds before the guest's clock even starts; skipping
    it keeps the tiny guest's wall time close to its own boot time, which is what benchmarks compare.
    Falls back to the bzImage itself when the payload is not XZ.
    """
    import lzma

    data = bzimage.read_bytes()
    at = data.find(b"\xfd7zXZ\x00")
    if at >= 0:
        try:
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
        except lzma.LZMAError:
            elf = b""
        if elf[:4] == b"\x7fELF":
            out = dest / "tiny-vmlinux"
            out.write_bytes(elf)
            return out
    out = dest / "tiny-vmlinuz"
    shutil.copyfile(bzimage, out)
    return out


def _busybox() -> Path:
    path = Path(require("busybox"))
    out = subprocess.run(["file", "-L", str(path)], capture_output=True, text=True).stdout \
        if shutil.which("file") else "statically linked"
    if "statically linked" not in out and "static-pie" not in out:
        raise MissingEnvironment(f"{path} is not a static busybox", hint="apt-get install busybox-static")
    return path


def build(dest: Path, disk_size_mb: int = 32) -> TinyGuest:
    """Make kernel + initramfs + qcow2 root disk under ``dest`` (an existing directory)."""
    release, kernel, moddir = host_kernel()
    busybox = _busybox()
    dest = Path(dest)
    mods = _module_order(moddir, MODULES)
    members = [Member("bin", kind=stat.S_IFDIR, mode=0o755), Member("lib", kind=stat.S_IFDIR, mode=0o755),
               Member("lib/modules", kind=stat.S_IFDIR, mode=0o755),
               Member("bin/busybox", busybox.read_bytes(), mode=0o755),
               Member("init", _INITRAMFS_INIT.encode(), mode=0o755),
               Member("modules.order", ("\n".join(Path(m).name for m in mods) + "\n").encode())]
    members += [Member(f"lib/modules/{Path(m).name}", (moddir / m).read_bytes()) for m in mods]
    initrd = dest / "tiny-initrd.gz"
    initrd.write_bytes(gzip.compress(newc_archive(members), compresslevel=1, mtime=0))
    kcopy = _uncompressed_kernel(kernel, dest)

    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        root = Path(tmp) / "root"
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/sbin", "proc", "sys", "dev", "tmp", "run", "etc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, root / "bin/busybox")
        applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for a in applets:
            link = root / a
            if not link.exists() and a != "bin/busybox":
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to("/bin/busybox")
        if (root / "sbin/init").exists() or (root / "sbin/init").is_symlink():
            (root / "sbin/init").unlink()
        (root / "sbin/init").write_text(_DISK_INIT)
        (root / "sbin/init").chmod(0o755)
        probe = root / guest_probe.SCRIPT_PATH.lstrip("/")
        probe.write_text(guest_probe.script(settle_seconds=10))
        probe.chmod(0o755)
        raw = Path(tmp) / "root.ext4"
        subprocess.run([require("mke2fs"), "-q", "-F", "-t", "ext4", "-L", "tinyroot", "-d", str(root),
                        str(raw), f"{disk_size_mb}M"], check=True, capture_output=True)
        disk = dest / "tiny-root.qcow2"
        subprocess.run([require("qemu-img"), "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(disk)],
                       check=True, capture_output=True)
    return TinyGuest(arch="x86_64", kernel=kcopy, initrd=initrd, disk=disk,
                     append="console=ttyS0,115200 rdinit=/init panic=-1")
