"""builder.image.probe against real qemu-img on hostile and ordinary images made in the test."""

from __future__ import annotations

import re
import subprocess

import pytest

from builder.errors import UnsafeImageError
from builder.image.probe import probe


def qimg(*args):
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


@pytest.mark.parametrize("fmt,ext", [("qcow2", "img"), ("raw", "qcow2"), ("vmdk", "raw"), ("vpc", "vhd"),
                                     ("vhdx", "x"), ("vdi", "vdi")])
def test_format_is_detected_not_taken_from_the_extension(tmp_path, fmt, ext):
    img = tmp_path / f"disk.{ext}"
    qimg("create", "-q", "-f", fmt, img, "64M")
    info = probe(img)
    assert info.format == fmt
    assert info.virtual_size >= 64 << 20


def test_backing_file_is_refused(tmp_path):
    base = tmp_path / "base.qcow2"
    qimg("create", "-q", "-f", "qcow2", base, "16M")
    top = tmp_path / "top.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, top)
    with pytest.raises(UnsafeImageError, match="backing file"):
        probe(top)


def test_backing_file_pointing_at_host_file_is_refused(tmp_path):
    # the classic attack: a qcow2 whose backing file is a host secret, read as raw
    top = tmp_path / "evil.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", "-u", top, "1M")
    with pytest.raises(UnsafeImageError, match="/etc/hostname"):
        probe(top)


def test_external_data_file_is_refused(tmp_path):
    img = tmp_path / "df.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}", img, "1M")
    with pytest.raises(UnsafeImageError, match="external data file"):
        probe(img)


def test_split_vmdk_is_refused(tmp_path):
    img = tmp_path / "split.vmdk"
    qimg("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", img, "3G")
    with pytest.raises(UnsafeImageError, match="extents"):
        probe(img)


def test_virtual_size_limit(tmp_path):
    img = tmp_path / "huge.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "8T")
    with pytest.raises(UnsafeImageError, match="beyond the limit"):
        probe(img)
    assert probe(img, max_virtual_size=16 << 40).virtual_size == 8 << 40


def test_garbage_missing_and_non_regular(tmp_path):
    with pytest.raises(UnsafeImageError, match="no such file"):
        probe(tmp_path / "nope")
    with pytest.raises(UnsafeImageError, match="not a regular file"):
        probe(tmp_path)
    # a truncated qcow2 header is not an image
    junk = tmp_path / "junk.qcow2"
    junk.write_bytes(b"QFI\xfb" + b"\x00\x00\x00\x03" + b"\xff" * 40)
    with pytest.raises(UnsafeImageError):
        probe(junk)


def test_rlimits_apply(tmp_path):
    """Each limit kicks in on its own and is named: the image that reads cleanly under the default
    limits is refused as unsafe (not a crash of ours) when qemu-img gets no CPU time (the kernel
    SIGKILLs it at the hard RLIMIT_CPU) or too small an address space (it cannot start its threads
    and aborts, or cannot map memory at all)."""
    import builder.image.probe as p

    img = tmp_path / "a.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "1M")
    assert p.run_qemu_img_info(img)["format"] == "qcow2"          # the default limits let it through
    with pytest.raises(UnsafeImageError) as cpu:
        p.run_qemu_img_info(img, cpu_seconds=0)
    assert "killed by signal 9" in cpu.value.message
    with pytest.raises(UnsafeImageError) as mem:
        p.run_qemu_img_info(img, address_space=16 << 20)
    assert re.search(r"killed by signal (6|11)\b|[Cc]annot allocate memory|failed to map", mem.value.message), \
        mem.value.message


@pytest.mark.parametrize("name", ["nbd:localhost:9", "json:{}", "file:disk.qcow2", "http:x"])
def test_protocol_like_names_never_reach_qemu_img(tmp_path, monkeypatch, name):
    """A file in the current directory named like a QEMU protocol is refused before qemu-img runs;
    written as ./name it is the plain file, and probe hands back its absolute path."""
    monkeypatch.chdir(tmp_path)
    qimg("create", "-q", "-f", "qcow2", tmp_path / name, "1M")
    with pytest.raises(UnsafeImageError, match="looks like a QEMU protocol name") as ei:
        probe(name)
    assert f"./{name}" in ei.value.hint
    info = probe(f"./{name}")
    assert info.path == tmp_path / name and info.path.is_absolute() and info.format == "qcow2"


def test_probe_returns_the_resolved_path(tmp_path, monkeypatch):
    img = tmp_path / "real.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "1M")
    (tmp_path / "link.qcow2").symlink_to("real.qcow2")
    monkeypatch.chdir(tmp_path)
    assert probe("link.qcow2").path == img


def test_ironforge_run_refuses_a_protocol_name(tmp_path):
    """`ironforge run nbd:…` with such a file present: exit 1 naming the problem, no QEMU started."""
    import os
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    qimg("create", "-q", "-f", "qcow2", tmp_path / "nbd:localhost:9", "1M")
    env = {**os.environ, "PYTHONPATH": str(root)}
    res = subprocess.run([sys.executable, "-m", "builder.cli", "run", "nbd:localhost:9", "--arch", "x86_64"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "looks like a QEMU protocol name" in res.stderr and "Traceback" not in res.stderr
