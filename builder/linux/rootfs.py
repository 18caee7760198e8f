"""Prepare an extracted Debian root tree on the host, before it becomes a filesystem.

This tree is our own bootstrap output (never an untrusted guest), extracted as root into a
private temporary directory; editing it here costs nothing, whereas every step inside the
libguestfs appliance runs under TCG. Still, the tree holds absolute symlinks (e.g.
/etc/resolv.conf -> /run/...) that point at the *host* when followed from outside, so every
write goes through ``_target`` which refuses to follow a symlink anywhere on the path.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError

log = logging.getLogger("ironforge.linux.rootfs")

DEFAULT_HOSTNAME = "debian"

SSH_KEYGEN_UNIT_NAME = "ironforge-ssh-keygen.service"
# Debian's openssh-server makes host keys in its postinst only: an image whose keys were
# removed (so clones do not share them) needs them made at first boot, before sshd starts.
SSH_KEYGEN_UNIT = """\
[Unit]
Description=Generate missing SSH host keys (ironforge)
ConditionPathExists=/usr/bin/ssh-keygen
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class FstabEntry:
    spec: str          # "UUID=…"
    mountpoint: str
    fstype: str
    options: str
    passno: int


def fstab_text(entries: list[FstabEntry]) -> str:
    lines = ["# /etc/fstab: written by ironforge; filesystems by UUID (device names change under",
             "# virtio, UUIDs do not).",
             "# <file system> <mount point> <type> <options> <dump> <pass>"]
    for e in entries:
        lines.append(f"{e.spec} {e.mountpoint} {e.fstype} {e.options} 0 {e.passno}")
    return "\n".join(lines) + "\n"


def hosts_text(hostname: str) -> str:
    return (f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n"
            "# The following lines are desirable for IPv6 capable hosts\n"
            "::1     localhost ip6-localhost ip6-loopback\n"
            "ff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n")


def _target(root: Path, rel: str) -> Path:
    """``root/rel`` with no symlink among its parents; a symlink at the end is removed."""
    parts = [p for p in rel.strip("/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise BuildError(f"refusing path {rel!r} in the root tree")
    cur = root
    for p in parts[:-1]:
        cur = cur / p
        if cur.is_symlink():
            raise BuildError(f"{rel}: {cur.relative_to(root)} is a symlink in the root tree; "
                             "refusing to write through it")
        if not cur.exists():
            cur.mkdir(mode=0o755)
    final = cur / parts[-1]
    return final


def write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    p = _target(root, rel)
    if p.is_symlink():
        p.unlink()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(p, mode, follow_symlinks=False)
    os.chown(p, 0, 0, follow_symlinks=False)


def symlink(root: Path, rel: str, target: str) -> None:
    p = _target(root, rel)
    if p.is_symlink() or p.exists():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    os.symlink(target, p)


def remove(root: Path, rel: str) -> bool:
    p = _target(root, rel)
    if p.is_symlink() or p.is_file():
        p.unlink()
        return True
    return False


def read(root: Path, rel: str) -> str | None:
    p = _target(root, rel)
    if p.is_symlink() or not p.is_file():
        return None
    return p.read_text(errors="replace")


def empty_dir(root: Path, rel: str, keep: tuple[str, ...] = ()) -> int:
    """Remove the files under ``rel`` (not the directory itself); returns how many."""
    d = _target(root, rel)
    if d.is_symlink() or not d.is_dir():
        return 0
    n = 0
    for child in d.iterdir():
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            n += empty_dir(root, f"{rel}/{child.name}")
        else:
            child.unlink()
            n += 1
    return n


def set_shell_vars(text: str, values: dict[str, str]) -> str:
    """Set KEY=value lines of a shell-style config (/etc/default/grub), replacing existing or
    commented-out assignments of the same key, appending the rest."""
    out: list[str] = []
    done: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"^\s*#?\s*([A-Z_][A-Z0-9_]*)=", line)
        if m and m.group(1) in values:
            key = m.group(1)
            if key not in done:
                out.append(f"{key}={_quote(values[key])}")
                done.add(key)
            continue
        out.append(line)
    for key, value in values.items():
        if key not in done:
            out.append(f"{key}={_quote(value)}")
    return "\n".join(out) + "\n"


def _quote(v: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.,:/=+-]+", v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def prepare(root: Path, fstab: list[FstabEntry], grub_defaults: dict[str, str],
            hostname: str = DEFAULT_HOSTNAME) -> dict:
    """Everything the image needs that does not depend on running code inside it."""
    facts: dict = {}
    write(root, "etc/fstab", fstab_text(fstab))
    write(root, "etc/hostname", hostname + "\n")
    write(root, "etc/hosts", hosts_text(hostname))

    # Empty (not absent) machine-id: systemd makes a new one at first boot (ConditionFirstBoot)
    # so every clone gets its own; dbus reads it through a symlink.
    write(root, "etc/machine-id", "", 0o444)
    symlink(root, "var/lib/dbus/machine-id", "/etc/machine-id")

    removed = [p.name for p in sorted((root / "etc/ssh").glob("ssh_host_*"))] \
        if (root / "etc/ssh").is_dir() and not (root / "etc/ssh").is_symlink() else []
    for name in removed:
        remove(root, f"etc/ssh/{name}")
    facts["ssh_host_keys_removed"] = len(removed)
    if (root / "usr/sbin/sshd").exists():
        write(root, f"etc/systemd/system/{SSH_KEYGEN_UNIT_NAME}", SSH_KEYGEN_UNIT)
        symlink(root, f"etc/systemd/system/multi-user.target.wants/{SSH_KEYGEN_UNIT_NAME}",
                f"/etc/systemd/system/{SSH_KEYGEN_UNIT_NAME}")
        facts["ssh_keygen_unit"] = SSH_KEYGEN_UNIT_NAME

    # apt lists and caches: stale at once, and they are most of an image's churn
    facts["apt_files_removed"] = (empty_dir(root, "var/lib/apt/lists", keep=("lock",))
                                  + empty_dir(root, "var/cache/apt"))
    (_target(root, "var/lib/apt/lists/partial")).mkdir(mode=0o700, exist_ok=True)
    (_target(root, "var/cache/apt/archives/partial")).mkdir(mode=0o700, exist_ok=True, parents=True)

    # systemd-resolved's postinst points resolv.conf at its stub and leaves a backup behind
    remove(root, "etc/.resolv.conf.systemd-resolved.bak")
    if (root / "lib/systemd/systemd-resolved").exists() or (root / "usr/lib/systemd/systemd-resolved").exists():
        symlink(root, "etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")

    grub = read(root, "etc/default/grub")
    if grub is not None:
        write(root, "etc/default/grub", set_shell_vars(grub, grub_defaults))
        facts["grub_defaults"] = grub_defaults
    return facts


def kernel_version_key(v: str) -> list:
    """A kernel version's natural order (6.1.0-10 after 6.1.0-9), close to dpkg's for kernels."""
    return [(0, int(x)) if x.isdigit() else (1, x) for x in re.findall(r"\d+|[A-Za-z]+", v)]


def kernel_versions(root: Path) -> list[str]:
    """Kernel versions with both a vmlinuz and an initrd in /boot, sorted."""
    boot = root / "boot"
    out = []
    for p in sorted(boot.glob("vmlinuz-*")):
        v = p.name[len("vmlinuz-"):]
        if (boot / f"initrd.img-{v}").exists():
            out.append(v)
    return out

