"""Debian images built once per test session through bootstrap -> disk -> drivers (real
mmdebstrap against deb.debian.org, real libguestfs), in the engine store all image-building
tests share (tests/shared_cache.py, under $IRONFORGE_TEST_CACHE): the engine's keys hold the recipe values
each stage reads, the tool versions and the archive's InRelease digest, so a changed recipe or
archive rebuilds and anything else is a cache hit."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import tempfile
from pathlib import Path

from shared_cache import engine_cache

from builder import pipeline
from builder.cache.store import Store
from builder.engine import Engine, RunResult
from builder.host.accel import choose
from builder.host.guestfs_session import Drive, session
from builder.recipe import Recipe, load


# bootstrap -> disk -> drivers as the recipe's pipeline has them (the disk stage may apply
# file-only customizations), so the e2e tests find these same keys in the shared cache
stages = pipeline.base_image_stages


def engine() -> Engine:
    # the engine store every image-building test shares (tests/shared_cache.py), so the e2e
    # and customize tests reuse these bootstrap/disk artifacts as cache hits
    return Engine(Store(engine_cache()), choose())


def build(recipe: Recipe | str) -> RunResult:
    r = load(recipe) if isinstance(recipe, str) else recipe
    return engine().run(r, stages(r))


def variant(name: str, new_name: str | None = None, **values) -> Recipe:
    """The shipped recipe ``name`` with dotted keys overridden (e.g. drivers__modules=[...])."""
    base = load(name)
    vals = copy.deepcopy(base.values)
    for dotted, v in values.items():
        node = vals
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    return dataclasses.replace(base, values=vals, name=new_name or base.name)


def host_lsinitramfs(data: bytes) -> list[str]:
    """List an initramfs with the host's own lsinitramfs: independent of the guest's tools."""
    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        f.write(data)
        f.flush()
        return subprocess.run(["lsinitramfs", f.name], capture_output=True, text=True,
                              check=True).stdout.splitlines()


def debconf_get(config_dat: str, question: str) -> tuple[str, bool]:
    """The answer and seen flag of ``question`` in a config.dat, read by the host's own debconf
    (debconf-communicate over a private database): independent of how it was written."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, "config.dat").write_text(config_dat)
        Path(d, "templates.dat").write_text("")
        Path(d, "debconf.conf").write_text(
            f"Config: c\nTemplates: t\n\nName: c\nDriver: File\nFilename: {d}/config.dat\n\n"
            f"Name: t\nDriver: File\nFilename: {d}/templates.dat\n")
        out = subprocess.run(["debconf-communicate"], input=f"GET {question}\nFGET {question} seen\n",
                             capture_output=True, text=True, check=True,
                             env={"DEBCONF_SYSTEMRC": f"{d}/debconf.conf", "PATH": "/usr/bin:/bin"}).stdout
    value, seen = out.splitlines()[:2]
    assert value.startswith("0 ") or value == "0", out
    return value[2:], seen == "0 true"


def inspect(image: Path) -> dict:
    """Everything the tests check, read in ONE read-only libguestfs launch."""
    facts: dict = {}
    with session([Drive(image, "qcow2", readonly=True)], choose(), what="test inspection") as g:
        roots = g.inspect_os()
        facts["roots"] = len(roots)
        root = roots[0]
        facts["type"] = g.inspect_get_type(root)
        facts["distro"] = g.inspect_get_distro(root)
        facts["major"] = g.inspect_get_major_version(root)
        facts["arch"] = g.inspect_get_arch(root)
        mps = g.inspect_get_mountpoints(root)
        for mp in sorted(mps, key=len):
            g.mount_ro(mps[mp], mp)
        facts["mountpoints"] = mps
        facts["root_device"] = mps["/"]
        facts["root_fs_uuid"] = g.vfs_uuid(mps["/"])
        facts["root_fs_type"] = g.vfs_type(mps["/"])
        facts["partitions"] = g.list_partitions()
        facts["part_table"] = g.part_get_parttype("/dev/sda")
        facts["efi_boot"] = (g.ls("/boot/efi/EFI/BOOT") if g.is_dir("/boot/efi/EFI/BOOT") else [])
        facts["filesystems"] = g.list_filesystems()
        facts["fs_uuids"] = {dev: g.vfs_uuid(dev) for dev, t in facts["filesystems"].items()
                             if t in ("ext4", "vfat")}
        facts["bash_arch"] = g.file_architecture("/usr/bin/bash")
        facts["boot"] = sorted(g.ls("/boot"))
        facts["fstab"] = g.cat("/etc/fstab")
        facts["grub_cfg"] = g.cat("/boot/grub/grub.cfg")
        facts["default_grub"] = g.cat("/etc/default/grub")
        # the first 64 KiB of the disk: GRUB's boot sector and (MBR tables) its core image,
        # written by the disk stage from the host
        facts["disk_head"] = bytes(g.pread_device("/dev/sda", 64 * 1024, 0))
        facts["grub_modules"] = (sorted(g.ls("/boot/grub/i386-pc")) if g.is_dir("/boot/grub/i386-pc")
                                 else sorted(g.ls("/boot/grub/x86_64-efi")) if g.is_dir("/boot/grub/x86_64-efi")
                                 else [])
        facts["grub_work_left"] = g.exists("/run/ironforge-grub")
        facts["machine_id_size"] = g.filesize("/etc/machine-id")
        facts["ssh_host_keys"] = g.glob_expand("/etc/ssh/ssh_host_*")
        facts["ssh_keygen_unit"] = g.is_file("/etc/systemd/system/ironforge-ssh-keygen.service")
        facts["apt_lists"] = sorted(g.ls("/var/lib/apt/lists"))
        facts["apt_debs"] = g.glob_expand("/var/cache/apt/archives/*.deb")
        facts["hostname"] = g.cat("/etc/hostname").strip()
        facts["hosts"] = g.cat("/etc/hosts")
        facts["timezone"] = g.cat("/etc/timezone").strip() if g.exists("/etc/timezone") else None
        facts["localtime"] = g.readlink("/etc/localtime") if g.is_symlink("/etc/localtime") else None
        facts["default_locale"] = g.cat("/etc/default/locale") if g.exists("/etc/default/locale") else None
        facts["root_shadow"] = next(ln for ln in g.cat("/etc/shadow").splitlines() if ln.startswith("root:"))
        facts["policy_rc_d"] = g.exists("/usr/sbin/policy-rc.d")
        facts["resolv_conf"] = g.readlink("/etc/resolv.conf") if g.is_symlink("/etc/resolv.conf") else None
        facts["networkd_enabled"] = g.is_symlink(
            "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
        facts["networking_enabled"] = bool(g.glob_expand("/etc/systemd/system/*.wants/networking.service"))
        facts["e2scrub_reap_enabled"] = bool(g.glob_expand("/etc/systemd/system/*.wants/e2scrub_reap.service"))
        facts["network_unit"] = g.cat("/etc/systemd/network/80-ironforge-dhcp.network")
        facts["initramfs_modules_conf"] = g.cat("/etc/initramfs-tools/modules")
        facts["debconf_config"] = g.cat("/var/cache/debconf/config.dat")
        facts["initramfs"] = {}
        for name in facts["boot"]:
            if name.startswith("initrd.img-"):
                facts["initramfs"][name[len("initrd.img-"):]] = host_lsinitramfs(
                    g.read_file(f"/boot/{name}"))
        sv = g.statvfs("/")
        facts["root_used_bytes"] = (sv["blocks"] - sv["bfree"]) * sv["frsize"]
        g.umount_all()
    return facts
