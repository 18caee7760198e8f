"""Debconf answers written into a root tree on the host, as a file edit of its database.

Why a file edit: the tree is our own bootstrap output and the answers are a handful of values,
so running the guest's ``debconf-set-selections`` (its own perl, its own arch) would add a
chroot for nothing. ``/var/cache/debconf/config.dat`` is debconf's 822-style file database:
stanzas of ``Name``/``Template``/``Value``/``Owners``/``Flags``/``Variables`` separated by
blank lines. A question's stanza exists once its package's ``config`` script has registered it,
so only questions of installed packages are answered; anything else is reported, not invented.

The answer that matters: ``grub-pc/install_devices``. mmdebstrap installs grub-pc in a chroot
where its postinst asks nothing, so the answer stays empty, and a later upgrade of grub-pc in
the guest stops with "You must correct your GRUB install devices before proceeding" (exit 1
under a noninteractive frontend, a dialog otherwise).
"""

from __future__ import annotations

from pathlib import Path

from builder.errors import BuildError
from builder.linux import rootfs

CONFIG_DAT = "var/cache/debconf/config.dat"

# The disk the BIOS boots in every VM this image is made for: the first virtio-blk disk.
# /dev/disk/by-id has no entry for a virtio-blk disk unless the VM gives it a serial (QEMU and
# libvirt do not by default), and /dev/disk/by-path names the PCI slot, which differs between
# i440fx, q35 and every cloud; /dev/vda is the same name in all of them.
GRUB_PC_DISK = "/dev/vda"


def grub_pc_answers(disk: str = GRUB_PC_DISK) -> dict[str, str]:
    return {"grub-pc/install_devices": disk}


def _stanzas(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    cur: list[str] = []
    for line in text.splitlines():
        if line.strip() == "":
            if cur:
                out.append(cur)
                cur = []
        else:
            cur.append(line)
    if cur:
        out.append(cur)
    return out


def _field(stanza: list[str], name: str) -> int | None:
    for i, line in enumerate(stanza):
        if not line[:1].isspace() and line.split(":", 1)[0] == name:
            return i
    return None


def set_answers(text: str, answers: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` (a config.dat) with each answer's Value set and its question marked seen; also
    the names that have no stanza (their package is not installed), left unanswered."""
    for name, value in answers.items():
        if "\n" in value or "\r" in value:
            raise BuildError(f"debconf answer for {name} holds a line break")
    stanzas = _stanzas(text)
    done: set[str] = set()
    for st in stanzas:
        i = _field(st, "Name")
        name = st[i].split(":", 1)[1].strip() if i is not None else None
        if name not in answers:
            continue
        value_line = f"Value: {answers[name]}"
        v = _field(st, "Value")
        if v is not None:
            st[v] = value_line
        else:
            t = _field(st, "Template")
            st.insert((t if t is not None else 0) + 1, value_line)
        f = _field(st, "Flags")
        if f is None:
            o = _field(st, "Owners")
            st.insert((o if o is not None else len(st) - 1) + 1, "Flags: seen")
        else:
            flags = [x.strip() for x in st[f].split(":", 1)[1].split(",") if x.strip()]
            if "seen" not in flags:
                st[f] = "Flags: " + ", ".join([*flags, "seen"])
        done.add(name)
    missing = [n for n in answers if n not in done]
    return "".join("\n".join(st) + "\n\n" for st in stanzas), missing


def preseed(root: Path, answers: dict[str, str]) -> dict[str, str]:
    """Write ``answers`` into the tree's debconf database; returns what was answered."""
    text = rootfs.read(root, CONFIG_DAT)
    if text is None:
        return {}
    new, missing = set_answers(text, answers)
    # keep the mode debconf gave the file
    mode = (root / CONFIG_DAT).stat().st_mode & 0o777
    rootfs.write(root, CONFIG_DAT, new, mode)
    return {k: v for k, v in answers.items() if k not in missing}
