"""Boot phases from console lines and their arrival times (scripted consoles; real boots in
test_report.py / test_html_report.py through the shared fleet run)."""

from __future__ import annotations

import pytest

from builder.runner.marker import format_marker
from builder.runner.timeline import TimelineRecorder
from builder.runner.waiter import BootWatch, WatchConfig


def test_burst_of_early_lines_does_not_inflate_the_firmware_phase():
    t = TimelineRecorder()
    # the serial console registers at 0.8 s guest time: everything before arrives in one burst
    for stamp in (0.0, 0.1, 0.5, 0.8):
        t.line(f"[    {stamp:.6f}] early line", arrival=3.9)
    t.line("[    1.500000] later line", arrival=4.6)
    t.line("[    2.250000] Run /init as init process", arrival=5.3)
    t.marker(9.0)
    p = t.phases(marker_uptime=5.0)
    # kernel start <= min(arrival - stamp) = 3.1 (the 0.8 s line), not 3.9 (the first line's bound)
    assert p["firmware"] == pytest.approx(3.05)
    assert p["kernel"] == pytest.approx(2.25)
    assert p["userspace"] == pytest.approx(2.75)          # marker uptime 5.0 - kernel 2.25
    assert p["marker"] == 9.0


def test_without_marker_uptime_userspace_comes_from_our_clock():
    t = TimelineRecorder()
    t.line("[    0.000000] Linux version 6.1.0", arrival=2.0)
    t.line("[    1.000000] Run /sbin/init as init process", arrival=3.0)
    t.marker(7.5)
    assert t.phases()["userspace"] == pytest.approx(4.5)  # 7.5 - firmware 2.0 - kernel 1.0


def test_panic_leaves_kernel_unfinished_and_no_userspace():
    t = TimelineRecorder()
    t.line("[    0.000000] Linux version 6.1.0", arrival=1.5)
    t.line("[    3.200000] Kernel panic - not syncing: VFS: Unable to mount root fs", arrival=5.0)
    p = t.phases()
    assert p["kernel"] is None and p["userspace"] is None and p["marker"] is None
    assert p["kernel_unfinished"] == pytest.approx(3.2)
    assert p["firmware"] == pytest.approx(1.5)


def test_stamps_from_another_clock_and_unstamped_lines_are_ignored():
    t = TimelineRecorder()
    t.line("SeaBIOS (version 1.16.2)", arrival=0.2)
    t.line("[  131.205518] clocksource: 'tsc' is current clocksource.", arrival=14.0)  # a jumped guest clock
    t.line("IRONFORGE-WIN pass=done", arrival=20.0)
    assert t.phases() == {"firmware": None, "kernel": None, "userspace": None, "marker": None}


def test_fallback_end_of_kernel_for_kernels_that_do_not_name_init():
    t = TimelineRecorder()
    t.line("[    0.000000] Linux version 4.1", arrival=1.0)
    t.line("[    2.000000] Freeing unused kernel memory: 1234K", arrival=3.0)
    assert t.phases()["kernel"] == pytest.approx(2.0)


def test_boot_watch_outcome_carries_the_timeline():
    bw = BootWatch(WatchConfig(nonce="n1"), start=100.0)
    assert bw.feed("SeaBIOS\r\n[    0.000000] Linux version 6.1\n", 102.0) is None
    assert bw.feed("[    1.000000] Run /init as init process\n", 103.0) is None
    o = bw.feed(format_marker("n1", arch="x86_64", uptime="4.00") + "\n", 108.0)
    assert o is not None and o.ok
    assert o.timeline == {"firmware": 2.0, "kernel": 1.0, "userspace": 3.0, "marker": 8.0}
