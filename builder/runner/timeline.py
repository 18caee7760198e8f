"""Boot phases (firmware, kernel, userspace, marker) from a guest's serial console.

Two clocks meet on the console: ours (when a line arrived, seconds since QEMU started) and the
guest kernel's (the ``[   1.234567]`` printk stamp, seconds since the kernel started). A line can
only arrive after the guest printed it, so ``arrival - stamp`` is an upper bound on when the
kernel started; the smallest such bound over all stamped lines is the best estimate. Early kernel
lines arrive in one burst when the serial console registers, which is why the first stamped line
alone would overstate the firmware's share.

From there the guest clock times the rest: the kernel's ``Run /init as init process`` line ends
the kernel phase, and the ready marker's own ``uptime`` (also the guest clock) ends userspace.
``marker`` is when the marker reached us (our clock), i.e. the boot as the verdict saw it.
A boot that never left the kernel (a panic) gets ``kernel_unfinished``: the guest clock of its
last line. A phase the console never showed is None (a Windows guest prints no kernel lines; a panic has
no userspace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STAMP = re.compile(r"^\[\s*(\d{1,7}\.\d{1,9})\]")
# printed by every Linux since 4.x when it hands over to the first userspace program
_INIT = re.compile(r"Run \S+ as init process")
_INIT_FALLBACK = re.compile(r"Freeing unused kernel (?:image )?memory")

PHASES = ("firmware", "kernel", "userspace")


@dataclass
class TimelineRecorder:
    """Fed each console line with its arrival time; ``phases()`` gives the timeline so far."""

    kernel_start: float | None = None    # our clock, estimated as above
    init_stamp: float | None = None      # guest clock at the hand-over to userspace
    marker_arrival: float | None = None
    fallback_stamp: float | None = None  # a kernel that never says "Run … as init process"
    last_stamp: float | None = None      # guest clock of the latest believable line

    def line(self, text: str, arrival: float) -> None:
        m = _STAMP.match(text)
        if m is None:
            return
        stamp = float(m.group(1))
        if stamp > arrival + 5:          # a stamp from a guest whose clock is not ours (or a lie)
            return
        bound = max(0.0, arrival - stamp)
        self.last_stamp = stamp if self.last_stamp is None else max(self.last_stamp, stamp)
        if self.kernel_start is None or bound < self.kernel_start:
            self.kernel_start = bound
        if self.init_stamp is None and _INIT.search(text):
            self.init_stamp = stamp
        elif _INIT_FALLBACK.search(text):
            # the last thing a kernel frees before it starts init
            self.fallback_stamp = stamp

    def marker(self, arrival: float) -> None:
        self.marker_arrival = arrival

    def phases(self, marker_uptime: float | None = None) -> dict[str, float | None]:
        """{"firmware", "kernel", "userspace": seconds or None, "marker": our clock or None}."""
        firmware = self.kernel_start
        kernel = self.init_stamp if self.init_stamp is not None else self.fallback_stamp
        userspace = None
        if kernel is not None:
            if marker_uptime is not None and marker_uptime >= kernel:
                userspace = marker_uptime - kernel
            elif self.marker_arrival is not None and firmware is not None:
                userspace = max(0.0, self.marker_arrival - firmware - kernel)
        out = {"firmware": firmware, "kernel": kernel, "userspace": userspace, "marker": self.marker_arrival}
        if kernel is None and self.last_stamp is not None:
            out["kernel_unfinished"] = self.last_stamp   # a boot that died in the kernel: how far it got
        return {k: (round(v, 3) if v is not None else None) for k, v in out.items()}
