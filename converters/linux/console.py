"""Xen's paravirtual consoles (hvc0, xvc0) do not exist under KVM: kernel ``console=`` arguments,
inittab gettys, securetty and systemd ``serial-getty@`` units move to the first serial port,
which is what ``ironforge verify`` and ``virsh console`` read."""

from __future__ import annotations

import re

from converters.linux import devices
from converters.linux.edits import FileEdit, edit

PV = ("hvc0", "xvc0")
SERIAL = "ttyS0"
_CONSOLE_ARG = re.compile(r"\bconsole=(?:hvc0|xvc0)(?:,[0-9a-z]+)?\b")
_PV_WORD = re.compile(r"\b(?:hvc0|xvc0)\b")

GETTY_TEMPLATE = "/lib/systemd/system/serial-getty@.service"
WANTS = "/etc/systemd/system/getty.target.wants"


def rewrite_cmdline(text: str) -> str:
    return _CONSOLE_ARG.sub(f"console={SERIAL},115200", text)


def plan(files: dict[str, str | None], links: dict[str, str]) -> list[FileEdit]:
    """``files``: texts of the files that may name a console; ``links``: the symlinks under
    getty.target.wants (path -> target)."""
    edits: list[FileEdit | None] = []
    for path, text in files.items():
        if text is None:
            continue
        if devices.holds_cmdline(path):
            new = rewrite_cmdline(text)
            if new != text:
                edits.append(edit(files, path, new, "console=hvc0/xvc0 -> console=ttyS0,115200 "
                                  "(no Xen console under KVM)"))
        elif path == "/etc/inittab":
            new = _PV_WORD.sub(SERIAL, text)
            edits.append(edit(files, path, new, "inittab getty on ttyS0 instead of hvc0/xvc0"))
        elif path == "/etc/securetty" and _PV_WORD.search(text) and not re.search(r"^ttyS0$", text, re.M):
            edits.append(edit(files, path, text.rstrip("\n") + f"\n{SERIAL}\n", "root may log in on ttyS0"))
    moved = False
    for path, target in sorted(links.items()):
        name = path.rsplit("/", 1)[-1]
        if name in (f"serial-getty@{c}.service" for c in PV):
            edits.append(FileEdit(path, None, f"{name} waits for a Xen console that KVM has not got",
                                  old=target))
            moved = True
    getty = f"{WANTS}/serial-getty@{SERIAL}.service"
    if moved and getty not in links:
        edits.append(FileEdit(getty, None, "the login prompt moves to the serial port ttyS0",
                              link=GETTY_TEMPLATE))
    return [e for e in edits if e is not None]
