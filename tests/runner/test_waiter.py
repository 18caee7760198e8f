"""The marker parser and the boot waiter, fed scripted serial streams on a fake clock."""

from __future__ import annotations

from pathlib import Path

from builder.runner.marker import format_marker, parse_marker
from builder.runner.waiter import (EXITED, PANICKED, READY, STALLED, TIMED_OUT, BootWatch, SerialFollower,
                                   WatchConfig, clean, watch)

NONCE = "4f1c2a9e"
GOOD = ("IRONFORGE-READY nonce=4f1c2a9e arch=x86_64 kernel=6.1.0-26-amd64 root=/dev/vda1 "
        "virtio=virtio_blk,virtio_net,virtio-pci state=running failed=none uptime=12.34")


# ------------------------------------------------------------------------------------------- marker

def test_parse_full_marker():
    m = parse_marker(GOOD + "\r")
    assert m.nonce == NONCE
    assert m.get("arch") == "x86_64" and m.get("root") == "/dev/vda1" and m.get("state") == "running"
    assert m.list("virtio") == ["virtio_blk", "virtio_net", "virtio-pci"]
    assert m.list("failed") == [] and m.uptime == 12.34


def test_marker_after_kernel_noise_and_unknown_keys():
    m = parse_marker("[   12.3] random: crng init done" + GOOD + " future=thing")
    assert m.nonce == NONCE and m.get("future") == "thing"


def test_not_markers():
    assert parse_marker("IRONFORGE-READY") is None
    assert parse_marker("IRONFORGE-READY arch=x86_64") is None  # no nonce: not a proof
    assert parse_marker("echo IRONFORGE-READY-ish nonce=1") is None
    assert parse_marker("") is None


def test_format_round_trip():
    line = format_marker("n1", arch="i686", state="degraded", failed="a.service,b.service", kernel="6.1 x")
    m = parse_marker(line)
    assert m.nonce == "n1" and m.list("failed") == ["a.service", "b.service"] and m.get("kernel") == "6.1_x"


def test_clean_strips_escapes():
    assert clean("\x1b[2J\x1b[01;01HGRUB loading.\r") == "GRUB loading."


# ------------------------------------------------------------------------------------------- waiter

class Script:
    """A serial stream on a fake clock: [(time, text), ...]; exits at ``exit_at`` with ``code``."""

    def __init__(self, events, exit_at=None, code=0):
        self.events = list(events)
        self.now = 0.0
        self.exit_at, self.code = exit_at, code

    def clock(self):
        return self.now

    def sleep(self, dt):
        self.now += dt

    def read(self):
        out = [t for at, t in self.events if at <= self.now]
        self.events = [(at, t) for at, t in self.events if at > self.now]
        return "".join(out)

    def poll_exit(self):
        return self.code if self.exit_at is not None and self.now >= self.exit_at else None


def run(script, **cfg):
    c = WatchConfig(nonce=NONCE, **{"timeout": 100, "stall": 20, "panic_grace": 2, **cfg})
    return watch(script, c, script.poll_exit, clock=script.clock, sleep=script.sleep, interval=0.5, start=0.0)


def boot_lines(until, every=1.0):
    return [(t * every, f"[{t * every:8.3f}] booting step {t}\n") for t in range(int(until / every))]


def test_success_on_marker_split_across_reads():
    half = len(GOOD) // 2
    s = Script(boot_lines(10) + [(10.0, GOOD[:half]), (10.5, GOOD[half:] + "\r\n"), (11, "more\n")])
    o = run(s)
    assert o.status == READY and o.ok and o.marker.get("state") == "running"
    assert 10.5 <= o.elapsed <= 11.0


def test_stall_fails_early():
    s = Script(boot_lines(5) + [(90, GOOD + "\n")])
    o = run(s)
    assert o.status == STALLED and not o.ok
    assert 24 <= o.elapsed <= 25.5  # last output at 4 s + stall 20 s, long before the timeout
    assert o.tail[-1].endswith("booting step 4")


def test_silent_console_under_kvm_hints_at_kvm():
    o = run(Script([]), kvm=True)
    assert o.status == STALLED and "--accel tcg" in o.hint
    o = run(Script([]), kvm=False)
    assert o.status == STALLED and "console=ttyS0" in o.hint


def test_panic_fails_early_with_the_trace():
    panic = ["[    1.0] VFS: Cannot open root device \"vda1\"\n",
             "[    1.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n",
             "[    1.2] CPU: 0 PID: 1 Comm: swapper/0\n", "[    1.3] Call Trace:\n"]
    s = Script(boot_lines(3) + [(3 + i * 0.2, line) for i, line in enumerate(panic)])
    o = run(s)
    assert o.status == PANICKED
    assert "Unable to mount root fs" in o.message
    assert 5 <= o.elapsed <= 6          # panic at 3.2 s + 2 s grace
    assert any("Call Trace" in line for line in o.tail)  # grace captured the trace


def test_wrong_nonce_is_not_success():
    stale = GOOD.replace(NONCE, "deadbeef")
    s = Script(boot_lines(5) + [(5, stale + "\n")] + [(t, "tick\n") for t in range(6, 120, 5)])
    o = run(s)
    assert o.status == TIMED_OUT and o.wrong_nonces == ["deadbeef"]
    assert "different nonce" in o.hint


def test_overall_timeout_with_a_chatty_console():
    s = Script([(t * 0.5, "still going\n") for t in range(1000)])
    o = run(s, timeout=30)
    assert o.status == TIMED_OUT and 30 <= o.elapsed <= 30.5


def test_exit_before_marker_and_marker_in_final_bytes():
    o = run(Script(boot_lines(5), exit_at=6, code=0))
    assert o.status == EXITED and o.exit_code == 0
    # the marker written just before QEMU exited (no newline yet) still counts
    o = run(Script(boot_lines(5) + [(6, GOOD)], exit_at=6))
    assert o.status == READY


def test_panic_then_exit_is_a_panic():
    s = Script([(1, "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n")], exit_at=1.5)
    o = run(s)
    assert o.status == PANICKED and "Attempted to kill init" in o.message


def test_boot_watch_direct_feed():
    bw = BootWatch(WatchConfig(nonce=NONCE, stall=10, timeout=50), start=100.0)
    assert bw.feed("hello\n", 101.0) is None
    assert bw.tick(110.5) is None
    assert bw.tick(111.0).status == STALLED


def test_serial_follower_reads_growing_file_and_split_utf8(tmp_path: Path):
    log = tmp_path / "serial.log"
    f = SerialFollower(log)
    assert f.read() == ""              # not created yet
    data = "größe ✓\n".encode()
    log.write_bytes(data[:3])          # splits the 'ö'
    first = f.read()
    with open(log, "ab") as w:
        w.write(data[3:])
    assert first + f.read() == "größe ✓\n"
    f.close()


# ------------------------------------------------------------------------------- hostile consoles

def test_a_console_without_newlines_is_held_to_a_bounded_line():
    from builder.runner import waiter

    bw = BootWatch(WatchConfig(nonce=NONCE), 0.0)
    for i in range(200):                       # 20 MB without a single newline
        bw.feed("A" * 100_000, float(i) * 0.01)
        assert len(bw.partial) <= waiter.MAX_LINE
    o = bw.feed("\n" + GOOD + "\n", 3.0)       # the guest can still prove it booted afterwards
    assert o is not None and o.status == READY
    assert all(len(line) <= waiter.MAX_LINE for line in bw.tail)
    assert bw.tail[0] == "A" * waiter.MAX_LINE


def test_tail_lines_are_cut_and_counted():
    from builder.runner import waiter

    bw = BootWatch(WatchConfig(nonce=NONCE, tail_lines=5), 0.0)
    bw.feed(("B" * 50_000 + "\n") * 100, 1.0)
    assert len(bw.tail) == 5 and all(len(line) == waiter.MAX_LINE for line in bw.tail)


def test_serial_follower_reads_a_flood_in_bounded_pieces(tmp_path: Path):
    from builder.runner import waiter

    log = tmp_path / "serial.log"
    size = waiter.READ_CHUNK * 2 + 12345
    with open(log, "wb") as w:
        w.write(b"x" * size)
    f = SerialFollower(log)
    pieces = []
    while text := f.read():
        pieces.append(len(text))
    f.close()
    assert sum(pieces) == size and max(pieces) <= waiter.READ_CHUNK + (1 << 16) and len(pieces) >= 3
