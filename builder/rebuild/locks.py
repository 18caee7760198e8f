"""One rebuild at a time per output folder, and one publisher at a time per folder.

Locks are ``flock``s on files in ``<output>/.locks/`` (never deleted: see
builder/cache/lease.py for why), so a killed process never leaves one held. ``rebuild`` holds
``<name>.rebuild.lock`` for its whole run; whoever publishes into ``output/<name>/`` (rebuild,
and build) holds ``<name>.publish.lock`` while it does. The holder writes its pid and start
time into the file, so a second rebuild can say who it waits for.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
from pathlib import Path
from typing import Iterator

from builder.errors import OutputBusy

log = logging.getLogger("ironforge.rebuild")

LOCK_DIR = ".locks"


def lock_path(output_root: Path, name: str, kind: str) -> Path:
    return output_root / LOCK_DIR / f"{name}.{kind}.lock"


def holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextlib.contextmanager
def hold(output_root: Path, name: str, kind: str, *, wait: bool = True) -> Iterator[None]:
    """Hold the ``kind`` lock of ``output_root/name``; without ``wait`` a busy lock raises
    OutputBusy (exit 3) naming the holder."""
    path = lock_path(output_root, name, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(path)
            if not wait:
                raise OutputBusy(f"{output_root / name}: a {kind} is already running ({who}); "
                                 f"not waiting (--no-wait)",
                                 hint="run again later, or without --no-wait to wait for it") from None
            log.warning("%s: waiting for the running %s (%s)", output_root / name, kind, who)
            fcntl.flock(fd, fcntl.LOCK_EX)
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {now}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
