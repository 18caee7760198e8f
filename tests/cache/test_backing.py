"""The qcow2 header reader finds the same backing chain qemu-img does, and nothing in non-qcow2 files."""

from __future__ import annotations

import json
import os
import struct

from builder.cache.backing import backing_chain, backing_name
from cache_support import qemu_img


def test_chain_of_three_matches_qemu_img(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.qcow2", "b.qcow2", "c.qcow2"))
    qemu_img("create", "-q", "-f", "qcow2", str(a), "4M")
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(a), str(b))
    sub = tmp_path / "sub"
    sub.mkdir()
    c = sub / "c.qcow2"
    # a relative name is resolved against the directory of the image naming it, as qemu does
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "../b.qcow2", str(c))
    assert backing_name(c) == "../b.qcow2"
    assert backing_chain(c) == [b, a]
    info = json.loads(qemu_img("info", "--backing-chain", "-U", "--output=json", str(c)))
    assert [os.path.realpath(i["filename"]) for i in info[1:]] == [os.path.realpath(b), os.path.realpath(a)]
    assert backing_chain(a) == []


def test_not_qcow2_and_hostile_headers(tmp_path):
    raw = tmp_path / "x.raw"
    raw.write_bytes(b"\0" * 4096)
    assert backing_chain(raw) == []
    bad = tmp_path / "bad.qcow2"
    # a name length beyond qemu's limit, and an offset past the end: no name, no crash
    bad.write_bytes(b"QFI\xfb" + struct.pack(">IQI", 3, 512, 1 << 20) + b"\0" * 100)
    assert backing_name(bad) is None
    bad.write_bytes(b"QFI\xfb" + struct.pack(">IQI", 3, 1 << 40, 10) + b"\0" * 100)
    assert backing_name(bad) is None
    # a loop ends the walk
    loop = tmp_path / "loop.qcow2"
    name = str(loop).encode()
    loop.write_bytes(b"QFI\xfb" + struct.pack(">IQI", 3, 64, len(name)) + b"\0" * 44 + name)
    assert backing_chain(loop) == [loop]
