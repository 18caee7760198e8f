"""What a running build holds in the store, so that ``cache gc`` can delete beside it safely.

All locks are ``fcntl.flock`` on files under ``<root>/locks/``; the kernel drops them when a
process dies, so a killed build never leaves one behind.

- ``stage-<key>.lock``, exclusive (``Store.stage_lock``): a build holds it while it checks for
  and makes the stage ``key``, so one builder makes each key.
- ``use-<key>.lock``, shared: a build takes it for every stage it uses, hit or made, *while it
  holds stage-<key>.lock and before it reads the stage's meta*, and keeps it until its
  ``Lease`` ends (after publish). From the instant a build has seen a stage until it is done
  with its files, the stage is pinned.
- ``store.lock``, shared: held by every build for the whole lease. A download a build has
  fetched but no committed stage names yet is protected by nothing else, so gc deletes
  downloads only while it holds this lock exclusively.

gc takes ``stage-<key>.lock`` and ``use-<key>.lock`` exclusively and non-blocking (a busy key
is skipped, never waited for), renames the stage directory out of ``stages/`` (readers see it
gone at once) and deletes it afterwards. A build that reaches the key later finds no meta and
makes the stage again. A build takes the use lock under the stage lock before it reads the
meta, so there is no instant at which it has decided "hit" and gc can still delete.

Each use also touches ``used/<key>``: its mtime is the stage's last use, which gc's
``--keep-days`` and least-recently-used eviction read.

Lock files are never deleted: unlinking one that another process has open would let two
processes lock different inodes under one name. They are empty.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from builder.cache.store import Store


def use_lock_path(store: Store, key: str) -> Path:
    return store.root / "locks" / f"use-{key}.lock"


def stage_lock_path(store: Store, key: str) -> Path:
    return store.root / "locks" / f"stage-{key}.lock"


def store_lock_path(store: Store) -> Path:
    return store.root / "locks" / "store.lock"


def used_stamp(store: Store, key: str) -> Path:
    return store.root / "used" / key


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def touch_used(store: Store, key: str) -> None:
    p = used_stamp(store, key)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a"):
        pass
    os.utime(p)


class Lease:
    """The stages (and the downloads) one build is using; released when the build is done.

    Use as a context manager around ``Engine.run`` and whatever reads its artifacts (publish).
    """

    def __init__(self, store: Store):
        self.store = store
        self._store_fd: int | None = None
        self._fds: dict[str, int] = {}

    def __enter__(self) -> "Lease":
        fd = _open(store_lock_path(self.store))
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._store_fd = fd
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def hold(self, key: str) -> None:
        """Pin ``key``; the caller holds ``Store.stage_lock(key)`` (see the module docstring)."""
        if key not in self._fds:
            fd = _open(use_lock_path(self.store, key))
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            except BaseException:
                os.close(fd)
                raise
            self._fds[key] = fd
        touch_used(self.store, key)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self._fds)

    def release(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._store_fd is not None:
            os.close(self._store_fd)
            self._store_fd = None


@contextlib.contextmanager
def try_exclusive(*paths: Path) -> Iterator[bool]:
    """Take every lock in ``paths`` exclusively without waiting; yields False (holding none)
    when any is busy."""
    fds: list[int] = []
    try:
        for p in paths:
            fd = _open(p)
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        yield True
    finally:
        for fd in fds:
            os.close(fd)
