"""ironforge run: the command it builds, and a real session driven through a pseudo-terminal."""

from __future__ import annotations

import hashlib
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.host.accel import Accel
from builder.runner import tinyguest
from builder.runner.interactive import interactive_spec
from builder.runner.machine import build_command


def test_interactive_command_is_snapshot_and_stdio():
    spec = interactive_spec(Path("/img/x.qcow2"), "i386", Accel("tcg", "t"), fmt="qcow2")
    cmd = build_command(spec, None)
    assert cmd[0] == "qemu-system-i386"
    assert "-serial" in cmd and cmd[cmd.index("-serial") + 1] == "mon:stdio"
    drive = cmd[cmd.index("-drive") + 1]
    assert "snapshot=on" in drive and "format=qcow2" in drive
    assert "-no-reboot" not in cmd  # a person may reboot the guest
    spec = interactive_spec(Path("/img/x.raw"), "x86_64", Accel("tcg", "t"), fmt="raw", snapshot=False)
    assert "snapshot=on" not in build_command(spec, None)[build_command(spec, None).index("-drive") + 1]


def _on_a_terminal(image: Path, *, quit_after: float | None, timeout: float) -> tuple[int, bytes]:
    """``run_interactive(image)`` in a child whose terminal is a pseudo-terminal, as a person runs it.
    With ``quit_after`` the person types Ctrl-A x that many seconds in. Returns (exit status, all the
    terminal showed)."""
    code = ("import sys; from builder.runner.interactive import run_interactive; "
            "from builder.host.accel import Accel; "
            f"sys.exit(run_interactive({str(image)!r}, 'x86_64', Accel('tcg', 't'), memory_mb=256))")
    pid, fd = pty.fork()
    if pid == 0:  # child: the terminal is the pty
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    start = time.monotonic()
    sent = False
    try:
        while time.monotonic() - start < timeout:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:       # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if quit_after is not None and not sent and time.monotonic() - start > quit_after:
                os.write(fd, b"\x01x")  # Ctrl-A x: quit
                sent = True
        else:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return status, out


@pytest.mark.boot
def test_ctrl_a_x_quits_and_the_image_is_unchanged(tmp_path):
    """A blank disk booted for a person: Ctrl-A x quits QEMU, the image is unchanged (snapshot)."""
    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "32M"], check=True)
    before = hashlib.sha256(blank.read_bytes()).hexdigest()
    status, out = _on_a_terminal(blank, quit_after=5, timeout=90)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out[-2000:]
    assert b"QEMU: Terminated" in out, out[-2000:]
    assert hashlib.sha256(blank.read_bytes()).hexdigest() == before


@pytest.mark.boot
def test_the_guests_console_reaches_the_person(tmp_path_factory):
    """The tiny guest boots from its own disk (SYSLINUX, console on ttyS0): what its kernel, its init
    and the probe print shows on the person's terminal, and the session ends when the guest powers
    off; snapshot mode leaves the disk as it was."""
    guest = tinyguest.build(tmp_path_factory.mktemp("tiny-run"), bootable_disk=True)
    disk = guest.bootable_disk
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    status, out = _on_a_terminal(disk, quit_after=None, timeout=600)
    text = out.decode(errors="replace")
    assert "Linux version" in text, text[-3000:]                              # the kernel's console
    assert "tiny guest: root is on /dev/vda2" in text, text[-3000:]           # the guest's own init
    assert re.search(r"IRONFORGE-READY nonce=\S* .*root=/dev/vda2", text), text[-3000:]
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, text[-3000:]  # the guest powered off
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before
