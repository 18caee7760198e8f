"""builder.exports.sparse_sha256 against the real sha256sum, on files whose holes the filesystem
really has (truncate + writes), and the time it saves reading them."""

from __future__ import annotations

import os
import subprocess

from builder.exports.sparse_sha256 import CHUNK, sha256_sparse


def _sha256sum(p) -> str:
    return subprocess.run(["sha256sum", str(p)], capture_output=True, text=True, check=True).stdout.split()[0]


def _sparse(path, size, writes):
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in writes:
            f.seek(off)
            f.write(data)
    return path


def test_matches_sha256sum_on_holes_data_and_edges(tmp_path):
    cases = {
        "all-hole": _sparse(tmp_path / "a", 64 << 20, []),
        "data-at-both-ends": _sparse(tmp_path / "b", (64 << 20) + 12345,
                                     [(0, b"\xab" * 5000), ((64 << 20) + 12345 - 7, b"\xcdend!!!")]),
        "data-in-the-middle-odd-chunks": _sparse(tmp_path / "c", 3 * CHUNK + 17,
                                                 [(CHUNK - 3, os.urandom(CHUNK + 10)), (2 * CHUNK + 4096, b"x")]),
        "dense": tmp_path / "d",
        "empty": tmp_path / "e",
    }
    cases["dense"].write_bytes(os.urandom(CHUNK * 2 + 1))
    cases["empty"].write_bytes(b"")
    for name, p in cases.items():
        assert sha256_sparse(p) == _sha256sum(p), name


def test_holes_are_not_read(tmp_path):
    """A 256 MiB file with one MiB of data: the hash reads about that MiB (the rest is zeroes fed from
    memory), which /proc/self/io's read bytes show."""
    p = _sparse(tmp_path / "big", 256 << 20, [(128 << 20, os.urandom(1 << 20))])
    assert os.stat(p).st_blocks * 512 < (8 << 20)      # the filesystem really keeps it sparse

    def rchar() -> int:
        return int(next(ln for ln in open("/proc/self/io") if ln.startswith("rchar:")).split()[1])

    before = rchar()
    digest = sha256_sparse(p)
    assert rchar() - before < (16 << 20)
    assert digest == _sha256sum(p)
