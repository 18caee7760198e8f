"""builder.exports.gce: one member, disk.raw, oldgnu headers, stored sparse; unpacked by GNU tar it
is the source disk."""

from __future__ import annotations

import gzip
import subprocess
import tarfile


def test_single_sparse_oldgnu_member_named_disk_raw(exported):
    path = exported.dir / "tiny.gce.tar.gz"
    with tarfile.open(path, "r:gz") as tar:
        ms = tar.getmembers()
    assert [m.name for m in ms] == ["disk.raw"]
    assert ms[0].issparse()                       # holes are not stored as data
    header = gzip.open(path).read(512)
    assert header[257:265] == b"ustar  \x00"      # GNU/oldgnu magic (POSIX ustar is "ustar\0" "00")
    assert header[156:157] == b"S"                # the oldgnu sparse type flag


def test_unpacked_disk_is_the_source(exported, tmp_path):
    subprocess.run(["tar", "-xSzf", str(exported.dir / "tiny.gce.tar.gz"), "-C", str(tmp_path)], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.raw"]
    subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(exported.src),
                    str(tmp_path / "disk.raw")], check=True, capture_output=True)
