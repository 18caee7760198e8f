"""Serial logs have a size cap: a real socket stream past the cap, and a real QEMU guest's console."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from builder.runner.machine import MachineSpec, QemuMachine
from builder.runner.serialcap import SerialLog, truncation_note


def test_a_stream_past_the_cap_is_cut_with_a_note_and_never_blocks_the_writer(tmp_path):
    cap = 1 << 20
    log = tmp_path / "serial.log"
    sl = SerialLog(log, tmp_path / "s.sock", cap=cap)
    sent = 0
    done = threading.Event()

    def writer():
        nonlocal sent
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(str(tmp_path / "s.sock"))
            block = bytes(range(256)) * 256            # 64 KiB
            for _ in range(8 * 16):                    # 8 MiB, 8x the cap
                c.sendall(block)
                sent += len(block)
        done.set()

    t0 = time.monotonic()
    threading.Thread(target=writer, daemon=True).start()
    assert done.wait(30), "the writer blocked: the copier stopped reading at the cap"
    assert sl.join(10)
    sl.close()
    data = log.read_bytes()
    note = truncation_note(cap)
    assert len(data) == cap + len(note) and data.endswith(note)
    assert data[:256] == bytes(range(256))
    assert sl.written == cap and sl.dropped == sent - cap == 7 * cap
    assert time.monotonic() - t0 < 30


def test_a_log_under_the_cap_is_complete(tmp_path):
    log = tmp_path / "serial.log"
    sl = SerialLog(log, tmp_path / "s.sock", cap=1 << 20)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(str(tmp_path / "s.sock"))
        c.sendall(b"hello\n" * 1000)
    assert sl.join(10)
    sl.close()
    assert log.read_bytes() == b"hello\n" * 1000


def test_closing_before_anyone_connected_does_not_hang(tmp_path):
    sl = SerialLog(tmp_path / "serial.log", tmp_path / "s.sock")
    t0 = time.monotonic()
    sl.close()
    assert time.monotonic() - t0 < 5 and (tmp_path / "serial.log").exists()


@pytest.mark.boot
def test_a_real_guest_console_is_capped(tmp_path, tiny, accel):
    """The tiny guest's kernel prints far more than 4 KiB: QEMU's serial goes through the capped copier."""
    log = tmp_path / "serial.log"
    spec = MachineSpec(arch="x86_64", accel=accel, memory_mb=256, kernel=tiny.kernel, initrd=tiny.initrd,
                       append=tiny.append, serial_log=log, nic=None)
    m = QemuMachine(spec, qmp=False)
    m.serial_cap = 4096
    note = truncation_note(4096)
    with m:
        m.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not log.read_bytes().endswith(note):
            time.sleep(0.2)
        time.sleep(1)       # the kernel keeps printing; nothing more may land in the file
    data = log.read_bytes()
    assert data.endswith(note), data[-300:]
    assert len(data) == 4096 + len(note)
    assert b"Linux version" in data[:4096]
