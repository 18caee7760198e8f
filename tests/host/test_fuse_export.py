"""builder.host.fuse_export: a qcow2 (with its backing chain) as a raw file through the real
qemu-storage-daemon and /dev/fuse; what it writes lands in the top image only, and nothing (no
mount, no daemon, no file) is left when the block ends, however it ends."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from fuse_support import without_dev_fuse

from builder.errors import ToolFailed
from builder.host import fuse_export


def _qcow2(path, size="8M", backing=None):
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing:
        cmd += ["-b", str(backing), "-F", "qcow2"]
    subprocess.run([*cmd, str(path), *([] if backing else [size])], check=True)
    return path


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _daemons():
    out = subprocess.run(["pgrep", "-f", "qemu-storage-daemon"], capture_output=True, text=True).stdout
    return set(out.split())


def test_this_host_can_export():
    # the product falls back to libguestfs without it; the tests below need it to mean anything
    assert fuse_export.unavailable() is None


def test_writes_land_in_the_overlay_and_reads_see_the_backing(tmp_path):
    base = _qcow2(tmp_path / "base.qcow2")
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 64k", str(base)], check=True,
                   capture_output=True)
    before = _sha(base)
    top = _qcow2(tmp_path / "top.qcow2", backing=base)
    daemons = _daemons()
    with fuse_export.raw_view(top, tmp_path / "view.raw", writable=True) as raw:
        assert raw.stat().st_size == 8 * 1024 * 1024
        with open(raw, "r+b") as f:
            f.seek(1024 * 1024)
            assert f.read(4) == b"\x5a" * 4                     # the backing file's bytes
            f.seek(4 * 1024 * 1024)
            f.write(b"ironforge")
    assert not (tmp_path / "view.raw").exists() and _daemons() == daemons
    assert _sha(base) == before
    got = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -v 4M 9", str(top)], capture_output=True,
                         text=True, check=True).stdout
    assert "ironforge" in got                                    # flushed into the overlay


def test_a_read_only_view_refuses_writes(tmp_path):
    img = _qcow2(tmp_path / "img.qcow2")
    before = _sha(img)
    with fuse_export.raw_view(img, tmp_path / "view.raw") as raw:
        with pytest.raises(OSError):
            with open(raw, "r+b") as f:
                f.write(b"x")
                f.flush()
                os.fsync(f.fileno())
    assert _sha(img) == before


def test_an_error_inside_the_block_still_stops_the_daemon_and_unmounts(tmp_path):
    img = _qcow2(tmp_path / "img.qcow2")
    daemons = _daemons()
    with pytest.raises(RuntimeError, match="boom"):
        with fuse_export.raw_view(img, tmp_path / "view.raw", writable=True):
            raise RuntimeError("boom")
    assert not (tmp_path / "view.raw").exists() and _daemons() == daemons


def test_an_image_the_daemon_cannot_open_is_a_tool_error_naming_it(tmp_path):
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"not a qcow2 at all" * 100)
    with pytest.raises(ToolFailed) as exc:
        with fuse_export.raw_view(bad, tmp_path / "view.raw"):
            pass
    assert "bad.qcow2" in exc.value.message and "qemu-storage-daemon" in exc.value.message
    assert not (tmp_path / "view.raw").exists()


def test_a_host_without_dev_fuse_is_said_plainly():
    r = without_dev_fuse("from builder.host import fuse_export; print(fuse_export.unavailable())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/dev/fuse cannot be opened (No such file or directory)"
