"""clone_file: an inode of its own, same bytes, holes kept."""

from __future__ import annotations

import pytest

from builder.clone import clone_file


def test_clone_is_private_same_bytes_and_stays_sparse(tmp_path):
    src, dst = tmp_path / "src.raw", tmp_path / "dst.raw"
    with open(src, "wb") as f:
        f.truncate(256 << 20)              # 256 MiB, almost all hole
        f.seek(1 << 20)
        f.write(b"a" * 65536)
        f.seek(200 << 20)
        f.write(b"b" * 65536)
    src.chmod(0o444)
    how = clone_file(src, dst, mode=0o444)
    assert how in ("reflink", "copy")
    assert dst.stat().st_ino != src.stat().st_ino and dst.stat().st_mode & 0o777 == 0o444
    assert dst.stat().st_size == src.stat().st_size
    with open(src, "rb") as a, open(dst, "rb") as b:
        while block := a.read(8 << 20):
            assert b.read(8 << 20) == block
    assert dst.stat().st_blocks * 512 < 8 << 20   # the holes were not written out as zeros


def test_clone_refuses_an_existing_destination_and_leaves_it(tmp_path):
    src, dst = tmp_path / "s", tmp_path / "d"
    src.write_bytes(b"new")
    dst.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        clone_file(src, dst)
    assert dst.read_bytes() == b"keep"
