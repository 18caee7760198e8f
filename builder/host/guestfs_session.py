"""One way to open libguestfs: the right backend, read-only by default, always closed.

A launch costs ~20 s under TCG, so a stage opens one session and batches every edit in it.

Commands run inside the image (``guest_command``) get a time limit: libguestfs itself would wait
for a hung ``update-initramfs`` or a recipe command forever.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from builder.errors import BuildError, GuestfsError
from builder.host.accel import Accel
from builder.host.tools import require_python_module

log = logging.getLogger("ironforge.guestfs")


@dataclass(frozen=True)
class Drive:
    path: Path
    format: str = "qcow2"
    readonly: bool = True
    label: str | None = None
    discard: str | None = None     # "besteffort" on writable drives, so fstrim frees clusters


class _ErrorTranslatingHandle:
    """Wraps a GuestFS handle so every libguestfs RuntimeError becomes a GuestfsError."""

    def __init__(self, g, what: str):
        self._g = g
        self._what = what

    def __getattr__(self, name):
        attr = getattr(self._g, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except RuntimeError as exc:
                raise GuestfsError(f"{self._what}: libguestfs {name}: {exc}") from exc
        return call

    @property
    def raw(self):
        return self._g


def new_handle(accel: Accel):
    """A configured GuestFS handle, not launched: the direct backend, and TCG for its appliance
    unless ``accel`` is KVM (on a PVM host the appliance's kernel would hang under KVM). Set on
    the handle rather than in os.environ: no process-wide state to leak."""
    guestfs = require_python_module("guestfs", "python3-guestfs")
    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend("direct")
    if not accel.kvm:
        g.set_backend_settings(["force_tcg"])
    return g


@contextlib.contextmanager
def session(drives: list[Drive], accel: Accel, what: str = "image edit",
            memsize: int | None = None, smp: int | None = None, network: bool = False,
            trace: bool = False) -> Iterator[_ErrorTranslatingHandle]:
    """Launch one appliance over ``drives`` and yield a handle; close it whatever happens."""
    g = new_handle(accel)
    try:
        if trace:
            g.set_trace(1)
        if memsize:
            g.set_memsize(memsize)
        if smp:
            g.set_smp(smp)
        if network:
            g.set_network(True)
        for d in drives:
            kw = {"format": d.format, "readonly": d.readonly}
            if d.label:
                kw["label"] = d.label
            if d.discard:
                kw["discard"] = d.discard
            g.add_drive_opts(str(d.path), **kw)
        t0 = time.monotonic()
        try:
            g.launch()
        except RuntimeError as exc:
            raise GuestfsError(f"{what}: the libguestfs appliance did not start: {exc}",
                               hint="run `ironforge doctor`; `libguestfs-test-tool` shows details") from exc
        log.debug("%s: appliance up in %.1f s (%s)", what, time.monotonic() - t0,
                  "KVM" if accel.kvm else "TCG")
        h = _ErrorTranslatingHandle(g, what)
        yield h
        try:
            g.shutdown()
        except RuntimeError as exc:
            raise GuestfsError(f"{what}: writing changes back failed: {exc}") from exc
    finally:
        g.close()


# Runs "$@" under the guest's timeout(1): TERM at the limit, KILL 10 s later (-k: coreutils and
# busybox both know it). A timeout is told from the command's own exit 124/137 by the time it
# took, and reported on stderr, which libguestfs puts in its error message. A guest without
# timeout(1) runs the command unbounded.
_TIMEOUT_MARK = "@@ironforge-guest-timeout@@"
_LIMITED = (   # nothing here needs /dev/null: an image's /dev may be empty in the appliance
    'limit=$1; shift; start=$(date +%s); '
    'if [ -n "$(command -v timeout)" ]; then timeout -k 10 "$limit" "$@"; else "$@"; fi; '
    'rc=$?; '
    'if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then '
    '  now=$(date +%s); '
    f'  [ $((${{now:-0}} - ${{start:-0}})) -ge "$limit" ] && echo "{_TIMEOUT_MARK}" >&2; '
    'fi; exit $rc'
)


def guest_command(g, argv: list[str], *, limit: int, what: str | None = None) -> str:
    """``g.command(argv)`` (chrooted in the mounted guest) stopped after ``limit`` seconds.

    Over the limit it raises a BuildError naming the command and the limit; other failures stay
    what libguestfs makes of them (GuestfsError through a ``session`` handle)."""
    limit = max(1, int(limit))
    try:
        return g.command(["/bin/sh", "-c", _LIMITED, "ironforge-limit", str(limit), *argv])
    except (RuntimeError, GuestfsError) as exc:
        if _TIMEOUT_MARK not in str(exc):
            raise
        name = what or " ".join(argv)
        raise BuildError(f"{name}: still running inside the image after {limit} s; stopped it",
                         hint="a command that waits for input or the network hangs in the appliance; "
                              "check it, or raise the limit if the guest is only slow (TCG is 5-20x "
                              "slower than KVM)") from None


def guest_sh(g, script: str, *, limit: int, what: str | None = None) -> str:
    """``g.sh(script)`` with a time limit (see ``guest_command``)."""
    return guest_command(g, ["/bin/sh", "-c", script], limit=limit, what=what or script)
