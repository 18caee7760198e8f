"""Watch a guest's serial console until it proves it booted, or clearly will not.

Three layers, so each can be tested alone with scripted input:

* ``SerialFollower`` reads a growing log file (new bytes only, UTF-8 split safely across reads);
* ``BootWatch`` is a pure state machine fed text and timestamps: success on a marker carrying the
  expected nonce; failure on a kernel panic (after a short grace so the trace is captured), on a stall
  (no console output for ``stall`` seconds), at the overall ``timeout``, or when QEMU exits first;
* ``watch()`` drives the two with a clock, a sleep and a ``poll_exit`` callable (QEMU's exit code or None).
"""

from __future__ import annotations

import codecs
import collections
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from builder.runner.marker import TAG, Marker, parse_marker
from builder.runner.timeline import TimelineRecorder

PANIC = re.compile(r"Kernel panic - not syncing|end Kernel panic")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78cDEHM]")
_KERNEL_STARTED = re.compile(r"Linux version \d|\[\s*\d+\.\d+\] ")

# Bounds on what a guest's console can make us keep in memory: a line longer than this is cut
# (a ready marker is far shorter), and one read takes at most this many bytes.
MAX_LINE = 4096
READ_CHUNK = 4 << 20

READY, PANICKED, STALLED, TIMED_OUT, EXITED = "ready", "panic", "stall", "timeout", "exited"


def clean(line: str) -> str:
    """A serial line fit for a person: escape sequences and control characters gone."""
    line = _ANSI.sub("", line)
    return "".join(c for c in line if c == "\t" or c >= " ").rstrip()


@dataclass(frozen=True)
class WatchConfig:
    nonce: str
    timeout: float = 900.0        # overall limit, seconds from start
    stall: float = 300.0          # fail when the console is silent this long
    panic_grace: float = 3.0      # keep reading this long after a panic line, for the trace
    kvm: bool = False             # a silent console under KVM is a KVM problem more often than not
    tail_lines: int = 40


@dataclass
class Outcome:
    status: str                   # ready | panic | stall | timeout | exited
    message: str
    elapsed: float                # seconds from start to verdict
    marker: Marker | None = None
    tail: list[str] = field(default_factory=list)
    hint: str | None = None
    wrong_nonces: list[str] = field(default_factory=list)
    exit_code: int | None = None
    timeline: dict[str, float | None] = field(default_factory=dict)   # builder.runner.timeline

    @property
    def ok(self) -> bool:
        return self.status == READY


class BootWatch:
    """Pure state machine: ``feed(text, now)`` and ``tick(now)`` return an Outcome once decided."""

    def __init__(self, cfg: WatchConfig, start: float):
        self.cfg = cfg
        self.start = start
        self.last_output = start
        self.partial = ""
        self.tail: collections.deque[str] = collections.deque(maxlen=cfg.tail_lines)
        self.panic_at: float | None = None
        self.panic_line = ""
        self.kernel_started = False
        self.wrong_nonces: list[str] = []
        self.outcome: Outcome | None = None
        self.bytes_seen = 0
        self.timeline = TimelineRecorder()

    def _decide(self, status: str, message: str, now: float, **kw) -> Outcome:
        marker = kw.get("marker")
        self.outcome = Outcome(status, message, now - self.start, tail=list(self.tail),
                               wrong_nonces=list(self.wrong_nonces),
                               timeline=self.timeline.phases(marker.uptime if marker else None), **kw)
        return self.outcome

    def _line(self, raw: str, now: float) -> Outcome | None:
        line = clean(raw[:MAX_LINE])
        if line:
            self.tail.append(line)
            self.timeline.line(line, now - self.start)
        if not self.kernel_started and _KERNEL_STARTED.search(line):
            self.kernel_started = True
        if TAG in line:
            marker = parse_marker(line)
            if marker is not None:
                if marker.nonce == self.cfg.nonce:
                    self.timeline.marker(now - self.start)
                    return self._decide(READY, "the guest reported ready", now, marker=marker)
                # a stale marker (an earlier boot, a copied log) proves nothing about this boot
                self.wrong_nonces.append(marker.nonce)
        if self.panic_at is None and PANIC.search(line):
            self.panic_at = now
            self.panic_line = line[line.find("Kernel panic"):] if "Kernel panic" in line else line
        return None

    def feed(self, text: str, now: float) -> Outcome | None:
        """Consume new console text seen at ``now``; then apply the time limits."""
        return self.consume(text, now) or self.tick(now)

    def consume(self, text: str, now: float) -> Outcome | None:
        """Consume console text without applying time limits (used when draining after exit)."""
        if self.outcome:
            return self.outcome
        if text:
            self.last_output = now
            self.bytes_seen += len(text)
            lines = (self.partial + text).split("\n")
            self.partial = lines.pop()[:MAX_LINE]
            for raw in lines:
                if (o := self._line(raw, now)) is not None:
                    return o
        return None

    def finish(self, now: float, exit_code: int | None) -> Outcome:
        """QEMU has exited and its log is drained: the last partial line counts too."""
        if self.outcome:
            return self.outcome
        if self.partial:
            rest, self.partial = self.partial, ""
            if (o := self._line(rest, now)) is not None:
                return o
        if self.panic_at is not None:
            return self._panic(now)
        return self._decide(EXITED, f"QEMU exited (code {exit_code}) before the guest reported ready "
                                    "(a reboot or power-off before the probe ran?)", now, exit_code=exit_code)

    def _panic(self, now: float) -> Outcome:
        return self._decide(PANICKED, f"kernel panic: {self.panic_line}", now,
                            hint="read the serial log above the panic: a missing root device or driver "
                                 "(virtio_blk not in the initramfs?) is the usual cause")

    def tick(self, now: float) -> Outcome | None:
        if self.outcome:
            return self.outcome
        cfg = self.cfg
        if self.panic_at is not None and now - self.panic_at >= cfg.panic_grace:
            return self._panic(now)
        if now - self.start >= cfg.timeout:
            return self._decide(TIMED_OUT, f"no ready marker within the overall timeout of {cfg.timeout:.0f} s",
                                now, hint=self._wrong_nonce_hint() or "raise verify.timeout (or --timeout) if "
                                "the guest is just slow (TCG emulation is 5-20x slower than KVM)")
        silent = now - self.last_output
        if silent >= cfg.stall:
            what = "no console output at all" if not self.bytes_seen else "no console output"
            hint = None
            if cfg.kvm and not self.kernel_started:
                hint = ("a guest that prints nothing after the firmware under KVM is most often a KVM problem "
                        "(nested or PVM hosts): try --accel tcg")
            elif not self.bytes_seen:
                hint = ("nothing reached the serial port: is the image bootable, and does its kernel command "
                        "line have console=ttyS0,115200? The screenshot shows the screen")
            return self._decide(STALLED, f"{what} for {silent:.0f} s (stall limit {cfg.stall:.0f} s)", now,
                                hint=self._wrong_nonce_hint() or hint)
        return None

    def _wrong_nonce_hint(self) -> str | None:
        if self.wrong_nonces:
            return (f"a ready marker with a different nonce ({self.wrong_nonces[-1]}) was seen: it came from "
                    "another boot, so it proves nothing about this one")
        return None


class Follower(Protocol):
    def read(self) -> str: ...


class SerialFollower:
    """New text of a growing file since the last read; a missing file reads as nothing yet."""

    def __init__(self, path: Path, chunk: int = 1 << 16):
        self.path = Path(path)
        self._f = None
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chunk = chunk

    def read(self) -> str:
        if self._f is None:
            try:
                self._f = open(self.path, "rb")
            except FileNotFoundError:
                return ""
        out, got = [], 0
        while got < READ_CHUNK:     # a flood is read over several polls, never all at once
            b = self._f.read(self._chunk)
            if not b:
                break
            got += len(b)
            out.append(self._dec.decode(b))
        return "".join(out)

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None


def watch(follower: Follower, cfg: WatchConfig, poll_exit: Callable[[], int | None], *,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
          interval: float = 0.05, start: float | None = None,
          on_line: Callable[[str], None] | None = None) -> Outcome:
    """Run a BootWatch over ``follower`` until it decides. ``poll_exit`` returns QEMU's exit code or None."""
    bw = BootWatch(cfg, clock() if start is None else start)
    while True:
        text = follower.read()
        now = clock()
        if on_line and text:
            on_line(text)
        if (o := bw.feed(text, now)) is not None:
            return o
        code = poll_exit()
        if code is not None:
            while text := follower.read():  # whatever QEMU wrote before it went
                if on_line:
                    on_line(text)
                if (o := bw.consume(text, clock())) is not None:
                    return o
            return bw.finish(clock(), code)
        sleep(interval)
