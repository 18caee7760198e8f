"""Follow an unattended Windows Setup run from its COM1 markers and screenshots; decide how it ended.

The answer file makes each Setup pass print one line to COM1::

    IRONFORGE-WIN pass=windowsPE | specialize | firstlogon | done

``InstallWatch`` is a pure state machine over three kinds of events, so it is tested on scripted
serial streams and screen sequences without QEMU:

- ``serial(text, now)``: COM1 output (markers, and whatever the scripts print);
- ``screen(digest, now)``: a screenshot's digest;
- ``exited(now, poweroff)``: QEMU is gone (``poweroff``: the guest shut itself down).

Verdicts: **ok** when the guest powers off after ``done``; **poweroff** when it powers off (or
QEMU exits) without ``done``, naming the last pass; **stall** when there is no new marker *and*
no new screen for ``stall`` seconds; **timeout** at the overall limit; **no-poweroff** when it
reported ``done`` but kept running for ``done_grace`` seconds.

Progress on screen counts as progress: Setup's passes take tens of minutes between markers under
TCG, with only its screen moving. A screen is "new" when its digest is not among the last few
distinct screens seen, so a blinking cursor or a two-frame animation over a stuck dialog does
not pass for progress. (A spinner that keeps turning over a hung Setup does; the overall
timeout catches that.)

``follow`` drives the watch against a live ``QemuMachine``: it tails the COM1 log, takes QMP
screendumps every ``screenshot_every`` seconds, keeps each distinct screen as evidence, and polls
for QEMU's exit.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger("ironforge.windows.install")

TAG = "IRONFORGE-WIN"
PASSES = ("windowsPE", "specialize", "firstlogon", "done")
_MARKER = re.compile(re.escape(TAG) + r"\s+pass=([A-Za-z]+)")

OK, POWEROFF, STALL, TIMEOUT, NO_POWEROFF = "ok", "poweroff", "stall", "timeout", "no-poweroff"

# What each pass means to a person reading an error.
PASS_DOING = {
    None: "before Windows Setup reported its first pass (firmware, or the installer CD did not boot)",
    "windowsPE": "in the windowsPE pass (disk partitioning, driver loading, image apply)",
    "specialize": "in the specialize pass (first boot from the disk: hardware, drivers, computer name)",
    "firstlogon": "in the first-logon commands (after OOBE and the automatic logon)",
    "done": "after the done marker",
}


@dataclass(frozen=True)
class WatchLimits:
    timeout: float = 7200.0            # overall, seconds
    stall: float = 1800.0              # no new marker and no new screen this long
    done_grace: float = 600.0          # done reported; power-off expected within this
    screen_memory: int = 8             # distinct recent screens that do not count as new


@dataclass
class PassSeen:
    name: str
    at: float                          # seconds from start


@dataclass
class Verdict:
    status: str
    message: str
    last_pass: str | None
    passes: list[PassSeen] = field(default_factory=list)
    elapsed: float = 0.0
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == OK


def parse_markers(line: str) -> list[str]:
    return _MARKER.findall(line)


class InstallWatch:
    """Pure: fed events with timestamps, returns a Verdict once decided (else None)."""

    def __init__(self, limits: WatchLimits, start: float):
        self.limits = limits
        self.start = start
        self.passes: list[PassSeen] = []
        self.last_marker_at = start
        self.last_screen_at = start
        self.done_at: float | None = None
        self.unknown: list[str] = []
        self._recent: collections.deque[str] = collections.deque(maxlen=limits.screen_memory)
        self._partial = ""
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self.verdict: Verdict | None = None
        self.screens = 0

    @property
    def last_pass(self) -> str | None:
        return self.passes[-1].name if self.passes else None

    def _decide(self, status: str, message: str, now: float) -> Verdict:
        self.verdict = Verdict(status, message, self.last_pass, list(self.passes), now - self.start,
                               list(self.tail))
        return self.verdict

    # -- events
    def serial(self, text: str, now: float) -> list[str]:
        """COM1 text; returns the passes newly reported in it."""
        if self.verdict or not text:
            return []
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        return self._lines(lines, now)

    def _lines(self, lines: list[str], now: float) -> list[str]:
        new = []
        for raw in lines:
            line = "".join(c for c in raw if c >= " " or c == "\t").strip()
            if line:
                self.tail.append(line)
            for name in parse_markers(line):
                if name not in PASSES:
                    self.unknown.append(name)
                    continue
                # a pass reported again (Setup re-runs a pass after a reboot) is not new progress,
                # but the latest pass is what a failure names
                if self.last_pass != name:
                    new.append(name)
                    self.last_marker_at = now
                self.passes.append(PassSeen(name, now - self.start))
                if name == "done" and self.done_at is None:
                    self.done_at = now
        return new

    def screen(self, digest: str, now: float) -> bool:
        """A screenshot's digest; True if it counts as a new screen (progress)."""
        if self.verdict:
            return False
        self.screens += 1
        if digest in self._recent:
            return False
        self._recent.append(digest)
        self.last_screen_at = now
        return True

    def exited(self, now: float, poweroff: bool, detail: str = "") -> Verdict:
        """QEMU is gone; ``poweroff``: the guest shut down on its own (QMP SHUTDOWN, guest-shutdown)."""
        if self.verdict:
            return self.verdict
        if self._partial:
            rest, self._partial = self._partial, ""
            self._lines([rest], now)
        if self.done_at is not None and poweroff:
            return self._decide(OK, "Windows Setup finished and the guest powered off", now)
        how = "powered off" if poweroff else f"stopped ({detail or 'QEMU exited'})"
        if self.done_at is not None:
            return self._decide(POWEROFF, f"the guest {how} after the done marker, but not by its own "
                                          "power-off", now)
        return self._decide(POWEROFF, f"the guest {how} {PASS_DOING[self.last_pass]}, without the done "
                                      f"marker{self._seen()}", now)

    def tick(self, now: float) -> Verdict | None:
        if self.verdict:
            return self.verdict
        lim = self.limits
        if self.done_at is not None and now - self.done_at >= lim.done_grace:
            return self._decide(NO_POWEROFF, f"Setup reported done but the guest did not power off within "
                                             f"{lim.done_grace:.0f} s", now)
        if now - self.start >= lim.timeout:
            return self._decide(TIMEOUT, f"Windows Setup did not finish within {lim.timeout:.0f} s "
                                         f"(windows.install.timeout); stopped {PASS_DOING[self.last_pass]}"
                                         f"{self._seen()}", now)
        quiet = now - max(self.last_marker_at, self.last_screen_at)
        if quiet >= lim.stall:
            return self._decide(STALL, f"no new marker and no new screen for {quiet:.0f} s "
                                       f"(windows.install.stall); stalled {PASS_DOING[self.last_pass]}"
                                       f"{self._seen()}", now)
        return None

    def _seen(self) -> str:
        names = list(dict.fromkeys(p.name for p in self.passes))
        return f" (markers seen: {', '.join(names)})" if names else " (no marker seen)"


# -- driving a live machine -------------------------------------------------------------------

def _tail_reader(path: Path) -> Callable[[], str]:
    pos = 0

    def read() -> str:
        nonlocal pos
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            return ""
        pos += len(data)
        return data.decode("utf-8", "replace")
    return read


@dataclass
class Followed:
    verdict: Verdict
    screenshots: list[Path]            # distinct screens kept, in order
    last_screenshot: Path | None


def follow(machine, com1_log: Path, shots_dir: Path, limits: WatchLimits, *, screenshot_every: float = 30.0,
           poll: float = 1.0, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep, logger: logging.Logger = log,
           on_tick: Callable[[float], None] | None = None) -> Followed:
    """Watch a started ``machine`` until the watch decides. ``on_tick(elapsed)`` lets the caller act
    early in the run (the QMP key-press fallback)."""
    start = machine.started_at if machine.started_at is not None else clock()
    w = InstallWatch(limits, start)
    read = _tail_reader(com1_log)
    shots_dir.mkdir(parents=True, exist_ok=True)
    kept: list[Path] = []
    last_shot: Path | None = None
    next_shot = start
    while True:
        now = clock()
        for name in w.serial(read(), now):
            logger.info("windows setup: pass %s reached after %.0f s", name, now - start)
        if on_tick is not None:
            on_tick(now - start)
        if not machine.running():
            sleep(0.2)
            w.serial(read(), clock())
            reasons = [e.get("data", {}).get("reason") for e in machine.events() if e.get("event") == "SHUTDOWN"]
            poweroff = "guest-shutdown" in reasons
            detail = f"exit code {machine.returncode}" + (f", {reasons[-1]}" if reasons else "")
            return Followed(w.exited(clock(), poweroff, detail), kept, last_shot)
        if now >= next_shot:
            next_shot = now + screenshot_every
            shot = shots_dir / f"screen-{int(now - start):06d}s.png"
            try:
                machine.screendump(shot)
            except Exception as exc:  # noqa: BLE001 - the guest may be powering off right now
                logger.debug("windows setup: no screenshot: %s", exc)
            else:
                if w.screen(hashlib.sha256(shot.read_bytes()).hexdigest(), now):
                    kept.append(shot)
                    last_shot = shot
                else:  # a screen seen recently: keep only the newest copy as "last"
                    if last_shot is not None and last_shot not in kept:
                        last_shot.unlink(missing_ok=True)
                    last_shot = shot
        if (v := w.tick(clock())) is not None:
            return Followed(v, kept, last_shot)
        sleep(poll)
