"""The Windows Setup watcher on scripted stand-in COM1 streams and screen sequences (no Windows
here), and ``follow`` against a real QEMU running a stand-in guest that prints the markers."""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

import pytest

from builder.host.accel import Accel
from builder.linux.initrd import Member, newc_archive
from builder.runner.machine import MachineSpec, QemuMachine
from builder.windows.install_watch import (NO_POWEROFF, OK, POWEROFF, STALL, TIMEOUT, InstallWatch,
                                           WatchLimits, follow, parse_markers)

LIM = WatchLimits(timeout=10_000, stall=600, done_grace=300, screen_memory=4)


def _run(events, limits=LIM):
    """Play (time, kind, value) events; then tick each second up to the last event time + 1."""
    w = InstallWatch(limits, 0.0)
    for t, kind, value in events:
        if kind == "serial":
            w.serial(value, t)
        elif kind == "screen":
            w.screen(value, t)
        elif kind == "exit":
            return w.exited(t, poweroff=value, detail="test")
        elif kind == "tick":
            pass
        if (v := w.tick(t)) is not None:
            return v
    return None


def _marker(p):
    return f"IRONFORGE-WIN pass={p}\r\n"


def test_parse_markers_in_noise():
    assert parse_markers("junk IRONFORGE-WIN pass=specialize more") == ["specialize"]
    assert parse_markers("IRONFORGE-WIN pass=") == [] and parse_markers("IRONFORGE-READY nonce=1") == []


def test_stand_in_full_run_markers_split_across_reads_then_poweroff():
    # (every gap between events is shorter than the 600 s stall limit)
    events = [(5, "screen", "firmware"), (30, "serial", "IRONFORGE-WIN pa"), (31, "serial", "ss=windowsPE\r\n"),
              (300, "screen", "copying 10%"), (700, "screen", "copying 80%"),
              (900, "serial", _marker("specialize")), (1400, "screen", "getting ready"),
              (1800, "serial", "C:\\> echo hello\r\n" + _marker("firstlogon")),
              (1900, "serial", _marker("done")), (1905, "exit", True)]
    v = _run(events)
    assert v.status == OK and v.ok and v.last_pass == "done"
    assert [p.name for p in v.passes] == ["windowsPE", "specialize", "firstlogon", "done"]
    assert [p.at for p in v.passes] == [31, 900, 1800, 1900] and v.elapsed == 1905
    assert "C:\\> echo hello" in v.tail


def test_stand_in_stall_unchanged_screen_and_no_marker_names_the_pass():
    events = [(10, "serial", _marker("windowsPE")), (200, "serial", _marker("specialize")),
              (250, "screen", "error dialog")] + [(t, "screen", "error dialog") for t in range(280, 1000, 30)]
    v = _run(events)
    assert v.status == STALL and v.last_pass == "specialize"
    assert "specialize pass" in v.message and "no new marker and no new screen for 600 s" in v.message
    assert v.elapsed == 850                       # the last new thing (the screen at 250) + stall


def test_stand_in_blinking_cursor_is_not_progress():
    events = [(1, "serial", _marker("windowsPE"))] + \
             [(t, "screen", "cursor-on" if (t // 30) % 2 else "cursor-off") for t in range(30, 2000, 30)]
    v = _run(events)
    assert v.status == STALL and v.last_pass == "windowsPE" and v.elapsed == 660


def test_stand_in_progressing_screen_without_markers_is_not_a_stall():
    limits = WatchLimits(timeout=5000, stall=600, screen_memory=4)
    events = [(t, "screen", f"progress {t}") for t in range(30, 4900, 30)]
    assert _run(events, limits) is None           # no verdict over 81 minutes of a moving screen
    v = _run(events + [(5000, "tick", None)], limits)
    assert v.status == TIMEOUT and v.last_pass is None
    assert "did not finish within 5000 s" in v.message and "no marker seen" in v.message


def test_stand_in_repeated_marker_is_not_new_progress():
    events = [(1, "serial", _marker("windowsPE"))] + [(t, "serial", _marker("windowsPE")) for t in range(100, 900, 100)]
    v = _run(events)
    assert v.status == STALL and v.elapsed == 700     # the first event past 1 + 600: repeats did not reset it


def test_stand_in_poweroff_without_done_names_the_last_pass():
    events = [(10, "serial", _marker("windowsPE")), (900, "serial", _marker("specialize")),
              (1500, "serial", _marker("firstlogon")), (1600, "exit", True)]
    v = _run(events, WatchLimits(timeout=10_000, stall=2000))
    assert v.status == POWEROFF and not v.ok and v.last_pass == "firstlogon"
    assert v.message.startswith("the guest powered off in the first-logon commands")
    assert "without the done marker (markers seen: windowsPE, specialize, firstlogon)" in v.message
    v = _run([(40, "exit", True)])
    assert v.status == POWEROFF and "before Windows Setup reported its first pass" in v.message


def test_stand_in_done_but_no_poweroff_and_a_crash_after_done():
    v = _run([(10, "serial", _marker("done"))] + [(t, "screen", f"s{t}") for t in range(20, 400, 10)])
    assert v.status == NO_POWEROFF and v.elapsed == 310
    v = _run([(10, "serial", _marker("done")), (20, "exit", False)])
    assert v.status == POWEROFF and "not by its own power-off" in v.message


def test_stand_in_last_partial_line_counts_at_exit():
    v = _run([(10, "serial", _marker("firstlogon") + "IRONFORGE-WIN pass=done"), (12, "exit", True)])
    assert v.status == OK


# -- follow() against a real QEMU ------------------------------------------------------------------

def _marker_guest(tmp: Path, passes: list[str]) -> tuple[Path, Path]:
    """Stand-in guest: the host kernel + busybox initramfs that prints the markers and powers off."""
    from builder.runner.tinyguest import _busybox, host_kernel

    _rel, kernel, _mods = host_kernel()
    lines = "\n".join(f'echo "IRONFORGE-WIN pass={p}" > /dev/ttyS0; /bin/busybox sleep 1' for p in passes)
    init = ("#!/bin/busybox sh\n/bin/busybox mkdir -p /dev\n/bin/busybox mount -t devtmpfs dev /dev\n"
            f"{lines}\n/bin/busybox poweroff -f\n")
    members = [Member("bin", kind=stat.S_IFDIR, mode=0o755),
               Member("bin/busybox", _busybox().read_bytes(), mode=0o755),
               Member("dev", kind=stat.S_IFDIR, mode=0o755),
               Member("init", init.encode(), mode=0o755)]
    initrd = tmp / "initrd.gz"
    initrd.write_bytes(gzip.compress(newc_archive(members), 1))
    return kernel, initrd


@pytest.mark.boot
@pytest.mark.parametrize("passes,status,last", [(["windowsPE", "specialize", "firstlogon", "done"], OK, "done"),
                                                (["windowsPE", "specialize"], POWEROFF, "specialize")])
def test_follow_real_qemu_stand_in_guest(tmp_path, passes, status, last):
    kernel, initrd = _marker_guest(tmp_path, passes)
    com1 = tmp_path / "com1.log"
    spec = MachineSpec(arch="x86_64", accel=Accel("tcg", "test"), memory_mb=256, nic=None, kernel=kernel,
                       initrd=initrd, append="console=ttyS0,115200 quiet panic=-1", serial_log=com1,
                       no_reboot=False)
    with QemuMachine(spec) as m:
        m.start()
        got = follow(m, com1, tmp_path / "shots", WatchLimits(timeout=240, stall=200), screenshot_every=2,
                     poll=0.2)
    v = got.verdict
    assert v.status == status and v.last_pass == last, v.message
    assert [p.name for p in v.passes] == passes
    assert got.screenshots and all(p.exists() and p.read_bytes()[:4] == b"\x89PNG" for p in got.screenshots)


@pytest.mark.boot
def test_follow_real_qemu_stall_on_a_static_screen(tmp_path):
    """Nothing bootable: SeaBIOS's static screen, no marker: a stall, with the screen kept."""
    com1 = tmp_path / "com1.log"
    spec = MachineSpec(arch="x86_64", accel=Accel("tcg", "test"), memory_mb=128, nic=None, serial_log=com1)
    with QemuMachine(spec) as m:
        m.start()
        got = follow(m, com1, tmp_path / "shots", WatchLimits(timeout=120, stall=8, screen_memory=4),
                     screenshot_every=1, poll=0.2)
    assert got.verdict.status == STALL and got.verdict.last_pass is None
    assert got.last_screenshot is not None and got.last_screenshot.exists()
