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
import tempfile
from dataclasses import dataclass
from pathlib import Path

from builder.errors import MissingEnvironment
from builder.host import proc
from builder.host.tools import require
from builder.linux.initrd import Member, newc_archive
from builder.runner import guest_probe

_T = 300   # seconds for any one tool on these few-MiB files: only a hang reaches it

MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "qemu_fw_cfg", "crc32c_generic", "ext4")

_INITRAMFS_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m 2>/dev/null; done
root=/dev/vda
for w in $(cat /proc/cmdline); do case $w in tinyroot=*) root=${w#tinyroot=};; esac; done
echo "tiny initramfs: modules loaded, mounting $root"
i=0
while [ ! -b $root ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 $root /newroot || { echo "tiny initramfs: no root disk"; exit 1; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""

_DISK_INIT = """#!/bin/busybox sh
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "tiny guest: root is on $(awk '$2 == "/" {print $1}' /proc/mounts)"
# Stand in for systemd when a probe unit was injected: run what the unit says, so verification's
# injection is exercised end to end; otherwise run the probe built into this disk.
unit=/etc/systemd/system/multi-user.target.wants/ironforge-probe.service
if [ -e "$unit" ]; then
    cmd=$(sed -n 's/^ExecStart=//p' "$unit")
    echo "tiny guest: running the injected probe unit: $cmd"
    exec $cmd
fi
echo "tiny guest: running the built-in probe"
exec /sbin/tiny-probe
"""


@dataclass(frozen=True)
class TinyGuest:
    arch: str
    kernel: Path
    initrd: Path
    disk: Path          # qcow2, ext4 root with busybox and the probe (whole disk, no partitions)
    append: str
    bootable_disk: Path | None = None   # qcow2: MBR + SYSLINUX /boot (FAT) + the same root, boots alone

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
    out = proc.run(["file", "-L", str(path)], what="file", timeout=_T, check=False).stdout \
        if shutil.which("file") else "statically linked"
    if "statically linked" not in out and "static-pie" not in out:
        raise MissingEnvironment(f"{path} is not a static busybox", hint="apt-get install busybox-static")
    return path


def build(dest: Path, disk_size_mb: int = 32, *, pretend_systemd: bool = False,
          bootable_disk: bool = False) -> TinyGuest:
    """Make kernel + initramfs + qcow2 root disk under ``dest`` (an existing directory).

    ``pretend_systemd`` adds a stub /lib/systemd/systemd so verification's probe injection accepts the
    disk; the tiny init then runs whatever the injected unit's ExecStart names.
    """
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
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, root / "bin/busybox")
        applets = proc.run([str(busybox), "--list-full"], what="busybox --list-full", timeout=_T).stdout.split()
        for a in applets:
            link = root / a
            if not link.exists() and a != "bin/busybox":
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to("/bin/busybox")
        if (root / "sbin/init").exists() or (root / "sbin/init").is_symlink():
            (root / "sbin/init").unlink()
        (root / "sbin/init").write_text(_DISK_INIT)
        (root / "sbin/init").chmod(0o755)
        probe = root / "sbin/tiny-probe"
        probe.write_text(guest_probe.script(settle_seconds=10))
        probe.chmod(0o755)
        # enough of a Debian system for libguestfs inspection (verification injects into real images)
        (root / "etc/os-release").write_text('PRETTY_NAME="ironforge tiny guest"\nNAME="Debian GNU/Linux"\n'
                                             'VERSION_ID="12"\nID=debian\n')
        (root / "etc/debian_version").write_text("12.0\n")
        (root / "etc/fstab").write_text("LABEL=tinyroot / ext4 defaults 0 1\n")
        (root / "etc/hostname").write_text("tiny\n")
        if pretend_systemd:
            stub = root / "lib/systemd/systemd"
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\necho 'tiny guest: not really systemd'\n")
            stub.chmod(0o755)
        raw = Path(tmp) / "root.ext4"
        proc.run([require("mke2fs"), "-q", "-F", "-t", "ext4", "-L", "tinyroot", "-d", str(root),
                  str(raw), f"{disk_size_mb}M"], what="mke2fs (tiny root)", timeout=_T)
        disk = dest / "tiny-root.qcow2"
        proc.run([require("qemu-img"), "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(disk)],
                 what="qemu-img convert (tiny root)", timeout=_T)
        bootable = _bootable_disk(Path(tmp), kernel, initrd, raw, dest / "tiny-boot.qcow2") if bootable_disk else None
    return TinyGuest(arch="x86_64", kernel=kcopy, initrd=initrd, disk=disk,
                     append="console=ttyS0,115200 rdinit=/init panic=-1", bootable_disk=bootable)


_SYSLINUX_CFG = """SERIAL 0 115200
DEFAULT tiny
PROMPT 0
TIMEOUT 0
LABEL tiny
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=tty0 console=ttyS0,115200 rdinit=/init tinyroot=/dev/vda2 panic=-1
"""

MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")


def _bootable_disk(tmp: Path, bzimage: Path, initrd: Path, root_fs: Path, out: Path) -> Path:
    """MBR disk: p1 FAT16 with SYSLINUX + kernel + initrd, p2 the ext4 root. No mounting: syslinux and
    mtools write into the FAT image file, the partitions are copied in at their offsets."""
    for tool, pkg in (("syslinux", "syslinux"), ("mcopy", "mtools"), ("mkfs.fat", "dosfstools"), ("sfdisk", "fdisk")):
        if shutil.which(tool) is None:
            raise MissingEnvironment(f"{tool} is needed for the bootable tiny disk", hint=f"apt-get install {pkg}")
    if not MBR_BIN.exists():
        raise MissingEnvironment(f"{MBR_BIN} missing", hint="apt-get install syslinux-common")
    mib = 1 << 20
    boot_mib = (bzimage.stat().st_size + initrd.stat().st_size) // mib + 8
    root_bytes = root_fs.stat().st_size
    fat = tmp / "boot.fat"
    proc.run(["mkfs.fat", "-F", "16", "-n", "TINYBOOT", "-C", str(fat), str(boot_mib * 1024)],
             what="mkfs.fat (tiny boot)", timeout=_T)
    cfg = tmp / "syslinux.cfg"
    cfg.write_text(_SYSLINUX_CFG)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for src, name in ((bzimage, "vmlinuz"), (initrd, "initrd.gz"), (cfg, "syslinux.cfg")):
        proc.run(["mcopy", "-i", str(fat), str(src), f"::/{name}"], what="mcopy", timeout=_T, env=env)
    proc.run(["syslinux", "--install", str(fat)], what="syslinux --install", timeout=_T, env=env)
    raw = tmp / "boot-disk.raw"
    p1, p2 = mib, mib + boot_mib * mib
    total = p2 + root_bytes + mib
    with open(raw, "wb") as f:
        f.truncate(total)
    table = (f"label: dos\nstart={p1 // 512}, size={boot_mib * mib // 512}, type=6, bootable\n"
             f"start={p2 // 512}, size={root_bytes // 512}, type=83\n")
    proc.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(raw)], input=table,
             what="sfdisk (tiny boot disk)", timeout=_T)
    with open(raw, "r+b") as f:
        f.write(MBR_BIN.read_bytes()[:440])
        for offset, part in ((p1, fat), (p2, root_fs)):
            f.seek(offset)
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 4 * mib)
    proc.run([require("qemu-img"), "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
             what="qemu-img convert (tiny boot disk)", timeout=_T)
    return out
