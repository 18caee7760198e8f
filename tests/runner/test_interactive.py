"""ironforge run: the command it builds, and a real session driven through a pseudo-terminal."""

from __future__ import annotations

import hashlib
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.host.accel import Accel
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


@pytest.mark.boot
def test_run_interactive_on_a_terminal(tmp_path):
    """A blank disk booted for a person: SeaBIOS talks on the terminal, Ctrl-A x quits, image unchanged."""
    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "32M"], check=True)
    before = hashlib.sha256(blank.read_bytes()).hexdigest()
    code = ("import sys; from builder.runner.interactive import run_interactive; "
            "from builder.host.accel import Accel; "
            f"sys.exit(run_interactive({str(blank)!r}, 'x86_64', Accel('tcg', 't'), memory_mb=128))")
    pid, fd = pty.fork()
    if pid == 0:  # child: the terminal is the pty
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    deadline = time.monotonic() + 60
    sent = False
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
            if not sent and time.monotonic() > deadline - 55:  # QEMU is up and owns the terminal
                os.write(fd, b"\x01x")  # Ctrl-A x: quit

                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert sent and os.WIFEXITED(status), out[-2000:]
    assert b"QEMU: Terminated" in out or os.WEXITSTATUS(status) == 0, out[-2000:]
    assert hashlib.sha256(blank.read_bytes()).hexdigest() == before
