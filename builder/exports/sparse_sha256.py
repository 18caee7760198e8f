"""SHA-256 of a file that reads only its data: holes (SEEK_DATA/SEEK_HOLE) are fed to the hash
from one reused block of zeroes, so a sparse raw disk of 20 GiB with 1 GiB of data costs the read
of 1 GiB plus hashing zeroes in memory. The digest is the same as ``sha256sum``'s."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

CHUNK = 4 << 20
_ZEROES = bytes(CHUNK)


def _zeroes(h, n: int) -> None:
    while n > 0:
        k = min(n, CHUNK)
        h.update(memoryview(_ZEROES)[:k])
        n -= k


def _data(h, fd: int, start: int, end: int) -> None:
    off = start
    while off < end:
        block = os.pread(fd, min(CHUNK, end - off), off)
        if not block:
            raise OSError(errno.EIO, "file shrank while being hashed")
        h.update(block)
        off += len(block)


def sha256_sparse(path: Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:       # no data after off: the rest is a hole
                    data = size
                elif exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no hole support: read it all
                    _data(h, fd, off, size)
                    break
                else:
                    raise
            _zeroes(h, data - off)
            if data >= size:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
            _data(h, fd, data, hole)
            off = hole
    finally:
        os.close(fd)
    return h.hexdigest()
