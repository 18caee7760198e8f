"""A qcow2 image seen as a raw file on the host, through qemu-storage-daemon's FUSE export.

Why: host tools that take a file and a byte offset (debugfs, e2fsck) can then read and edit
an image's filesystem without a libguestfs launch (15-50 s under TCG) and without the kernel
mounting anything. Used only on images ironforge made itself (see builder.runner.inject_host):
those tools are not hardened against hostile filesystems, libguestfs's appliance is.

The daemon is our child: bounded by ``builder.host.proc`` (PDEATHSIG, a deadline, its group
killed on every way out). Leaving the block stops it with SIGTERM first, so that it flushes the
qcow2 and unmounts; only a daemon that does not stop in time is killed, and its mount lazily
detached. (Daemonized, qemu-storage-daemon 7.2 left its mount behind on SIGTERM here.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

from builder.errors import ToolFailed
from builder.host import proc as hostproc
from builder.host import tools

FUSE_DEVICE = "/dev/fuse"
READY_TIMEOUT = 30.0        # the export is up in well under a second; a hung start is stopped
STOP_TIMEOUT = 30.0
LIFETIME = 600.0            # the whole view; callers do seconds of work in it


def unavailable() -> str | None:
    """Why a FUSE export cannot be made on this host, or None when it can."""
    if tools.which("qemu-storage-daemon") is None:
        return "qemu-storage-daemon is not installed (Debian package qemu-system-common)"
    try:
        fd = os.open(FUSE_DEVICE, os.O_RDWR)
    except OSError as exc:
        return f"{FUSE_DEVICE} cannot be opened ({exc.strerror})"
    os.close(fd)
    return None


def _mounted(path: Path) -> bool:
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except OSError:             # "transport endpoint is not connected": a dead export's mount
        return True


@contextlib.contextmanager
def raw_view(image: Path, mountpoint: Path, *, fmt: str = "qcow2", writable: bool = False,
             what: str = "FUSE export") -> Iterator[Path]:
    """``image`` (format ``fmt``, backing chain opened read-only by QEMU) as the raw file
    ``mountpoint`` for the duration of the block. Writes go to ``image`` only, and only when
    ``writable``."""
    mountpoint.touch(exist_ok=False)      # a fresh, empty file: a FUSE export mounts over a file
    err = mountpoint.with_name(mountpoint.name + ".stderr")
    cmd = [tools.require("qemu-storage-daemon"),
           "--blockdev", f"driver=file,node-name=file0,filename={image},read-only={'off' if writable else 'on'}",
           "--blockdev", f"driver={fmt},node-name=disk0,file=file0,read-only={'off' if writable else 'on'}",
           "--export", f"type=fuse,id=view0,node-name=disk0,mountpoint={mountpoint},"
                       f"writable={'on' if writable else 'off'}"]
    with open(err, "wb") as errf:
        proc = hostproc.spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        with hostproc.bounded(proc, LIFETIME):
            deadline = time.monotonic() + READY_TIMEOUT
            while not _mounted(mountpoint):
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = err.read_text(errors="replace").strip()[-400:] or \
                        ("exited" if proc.poll() is not None else f"not ready after {READY_TIMEOUT:.0f} s")
                    raise ToolFailed(f"{what}: qemu-storage-daemon could not export {image.name}: {why}",
                                     returncode=proc.returncode or 1, output=why)
                time.sleep(0.02)
            try:
                yield mountpoint
            finally:
                _stop(proc, mountpoint)
    finally:
        err.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if not _mounted(mountpoint):
                mountpoint.unlink()


def _stop(proc: subprocess.Popen, mountpoint: Path) -> None:
    """SIGTERM: the daemon flushes the image and unmounts. Then, whatever happened, no mount of
    ours is left behind (a killed daemon's mount only says 'transport endpoint not connected')."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass        # bounded() kills the group on the way out
    stopped = proc.returncode in (0, -signal.SIGTERM)
    if _mounted(mountpoint):
        hostproc.run([tools.require("umount"), "-l", str(mountpoint)], what="detaching a stale FUSE mount",
                     timeout=30, check=False)
    if not stopped:
        raise ToolFailed(f"qemu-storage-daemon did not stop cleanly ({proc.returncode}): the image's "
                         "last writes may be lost", returncode=proc.returncode or 1, output="")
