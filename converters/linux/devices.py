"""Disk device names a foreign hypervisor gave (/dev/xvdX, /dev/sdX, /dev/hdX, /dev/vdX) become
filesystem UUIDs, wherever the guest spells them: fstab, ``root=``/``resume=`` on every kernel
command line (virt-v2v rewrites only ``resume=`` there, so a stale ``root=/dev/xvda1`` survived
it), GRUB's device.map. A UUID is right under every bus; a ``/dev/vdX`` guess is not.

The old name maps to a disk by its letters (a=0, b=1, … aa=26) and a partition by its number, the
same order libguestfs adds drives in (/dev/sda, /dev/sdb… inside the appliance), which is how
``uuids`` (appliance device -> UUID) is keyed.
"""

from __future__ import annotations

import re

from converters.linux.edits import FileEdit, edit

# the kernel names a foreign bus gives a disk or partition; nvme too (nvme0n1p1)
_DEV = r"/dev/(?:(?:xvd|sd|hd|vd)([a-z]{1,2})(\d*)|nvme(\d+)n1(?:p(\d+))?)"
DEV = re.compile(rf"^{_DEV}$")
_CMDLINE_DEV = re.compile(rf"\b(root|resume)=({_DEV})(?=[\s\"']|$)")


def disk_index(letters: str) -> int:
    n = 0
    for c in letters:
        n = n * 26 + (ord(c) - ord("a") + 1)
    return n - 1


def appliance_name(old: str) -> str | None:
    """/dev/xvdb2 -> /dev/sdb2: the name libguestfs gives the same disk and partition."""
    m = DEV.match(old)
    if not m:
        return None
    if m.group(1):
        idx, part = disk_index(m.group(1)), m.group(2)
    else:
        idx, part = int(m.group(3)), m.group(4) or ""
    letters = ""
    idx += 1
    while idx:
        idx, r = divmod(idx - 1, 26)
        letters = chr(ord("a") + r) + letters
    return f"/dev/sd{letters}{part}"


def uuid_for(old: str, uuids: dict[str, str]) -> str | None:
    a = appliance_name(old)
    return uuids.get(a) if a else None


def rewrite_fstab(text: str, uuids: dict[str, str]) -> tuple[str, list[str]]:
    """fstab with every device-name spec that resolves replaced by UUID=; and what changed."""
    out, changed = [], []
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            u = uuid_for(fields[0], uuids)
            if u:
                line = line.replace(fields[0], f"UUID={u}", 1)
                changed.append(f"{fields[0]} -> UUID={u}")
        out.append(line)
    return "".join(out), changed


def rewrite_cmdline(text: str, uuids: dict[str, str]) -> tuple[str, list[str]]:
    """``root=``/``resume=`` device names in any text holding kernel command lines."""
    changed = []

    def sub(m):
        u = uuid_for(m.group(2), uuids)
        if not u:
            return m.group(0)
        changed.append(f"{m.group(1)}={m.group(2)} -> {m.group(1)}=UUID={u}")
        return f"{m.group(1)}=UUID={u}"
    return _CMDLINE_DEV.sub(sub, text), changed


_DISABLE_UUID = re.compile(r"^\s*(?:export\s+)?GRUB_DISABLE_LINUX_UUID=.*\n?", re.M)


def enable_grub_uuid(text: str) -> str:
    """GRUB_DISABLE_LINUX_UUID removed: with it grub-mkconfig writes the device it runs on
    (the appliance's /dev/sda1) into root=, the bug that made virt-v2v 2.2's output unbootable."""
    return _DISABLE_UUID.sub("", text)


def rewrite_device_map(text: str) -> str:
    return re.sub(r"/dev/(?:xvd|sd|hd)([a-z]+)\b", r"/dev/vd\1", text)


CMDLINE_FILES = ("/etc/default/grub", "/etc/kernel/cmdline", "/boot/grub/grub.cfg",
                 "/boot/grub/menu.lst", "/boot/grub2/grub.cfg", "/etc/sysconfig/grub",
                 "/etc/initramfs-tools/conf.d/resume")
# folders whose files hold kernel command lines: GRUB drop-ins, BLS entries (RHEL family)
CMDLINE_DIRS = ("/etc/default/grub.d/", "/boot/loader/entries/")


def holds_cmdline(path: str) -> bool:
    return path in CMDLINE_FILES or path.startswith(CMDLINE_DIRS)


def plan(files: dict[str, str | None], uuids: dict[str, str]) -> list[FileEdit]:
    edits: list[FileEdit | None] = []
    fstab = files.get("/etc/fstab")
    if fstab is not None:
        new, changed = rewrite_fstab(fstab, uuids)
        edits.append(edit(files, "/etc/fstab", new, "device names by UUID (the disks are virtio now): "
                          + "; ".join(changed)))
    for path in [p for p in files if holds_cmdline(p)]:
        text = files[path]
        if text is None:
            continue
        new, changed = rewrite_cmdline(text, uuids)
        why = []
        if changed:
            why.append("kernel command line by UUID: " + "; ".join(sorted(set(changed))))
        if path == "/etc/initramfs-tools/conf.d/resume":
            m = re.search(r"^RESUME=(\S+)", new, re.M)
            u = uuid_for(m.group(1), uuids) if m else None
            if u:
                new = new.replace(m.group(0), f"RESUME=UUID={u}")
                why.append(f"resume device {m.group(1)} by UUID")
        if path == "/etc/default/grub" or path.startswith("/etc/default/grub.d/"):
            nu = enable_grub_uuid(new)
            if nu != new:
                new = nu
                why.append("GRUB_DISABLE_LINUX_UUID removed, so grub-mkconfig writes root=UUID=")
        if why:
            edits.append(edit(files, path, new, "; ".join(why)))
    for path in ("/boot/grub/device.map", "/boot/grub2/device.map"):
        if files.get(path) is not None:
            edits.append(edit(files, path, rewrite_device_map(files[path]), "GRUB's disk is virtio (vdX) now"))
    return [e for e in edits if e is not None]
