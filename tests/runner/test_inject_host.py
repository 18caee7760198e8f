"""builder.runner.inject_host: the boot probe written into a throw-away overlay from the host (a
real ext4 at a partition offset, the real qemu-storage-daemon FUSE export and debugfs), read back
by an independent libguestfs launch; and every reason the host route steps aside."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import uuid as uuidlib

import pytest

from fuse_support import without_dev_fuse

from builder import qemu_img
from builder.host import accel as accelmod
from builder.host import fuse_export
from builder.host.guestfs_session import Drive, session
from builder.runner import guest_probe, inject_host
from builder.runner.verify import VerifyTarget, _inject_on_host

OFFSET = 1024 * 1024
FS_UUID = "6a1e3f0c-5b2d-4c7e-9a41-2f8d7b3c9e10"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """A small disk like the disk stage's: an MBR partition at 1 MiB holding ext4 with a tree that
    has the folders a Debian root has (so the probe's enable link has a home)."""
    d = tmp_path_factory.mktemp("ownroot")
    tree = d / "tree"
    for sub in ("etc/systemd/system/multi-user.target.wants", "usr/local/sbin", "usr/lib"):
        (tree / sub).mkdir(parents=True)
    raw = d / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    subprocess.run(["sfdisk", "-q", str(raw)], input="label: dos\nstart=2048, type=83\n", text=True, check=True)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-U", FS_UUID, "-d", str(tree),
                    "-E", f"offset={OFFSET}", str(raw), "60M"], check=True)
    img = d / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(img)], check=True)
    raw.unlink()
    return img


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_own_root_comes_from_the_disk_stages_record():
    data = {"root_uuid": FS_UUID, "partitions": [{"name": "esp", "number": 1, "start": 1048576, "size": 1},
                                                 {"name": "root", "number": 2, "start": 269484032, "size": 2}]}
    assert inject_host.own_root(data) == inject_host.OwnRoot(269484032, FS_UUID)
    assert inject_host.own_root({"partitions": data["partitions"]}) is None          # no UUID recorded
    assert inject_host.own_root({"root_uuid": FS_UUID, "partitions": []}) is None


def test_the_probe_lands_in_the_overlay_only_and_reads_back_independently(image, tmp_path):
    before = _sha(image)
    overlay = qemu_img.overlay(image, tmp_path / "overlay.qcow2")
    inject_host.inject_probe(overlay, inject_host.OwnRoot(OFFSET, FS_UUID), tmp_path, settle_seconds=77)
    assert _sha(image) == before                                  # the image under it: untouched
    assert not (tmp_path / "overlay.raw").exists()                # no export left behind
    # the filesystem is consistent after debugfs's writes (e2fsck, read-only, on a flat copy)
    flat = tmp_path / "flat.raw"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "raw", str(overlay), str(flat)], check=True)
    fsck = subprocess.run(["e2fsck", "-fn", f"{flat}?offset={OFFSET}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    with session([Drive(overlay, "qcow2", readonly=True)], accelmod.choose(), what="read back") as g:
        g.mount_ro("/dev/sda1", "/")
        st = g.statns(guest_probe.SCRIPT_PATH)
        assert (st["st_mode"] & 0o7777, st["st_uid"], st["st_gid"]) == (0o755, 0, 0)
        assert g.cat(guest_probe.SCRIPT_PATH) == guest_probe.script(77)
        unit = f"/etc/systemd/system/{guest_probe.UNIT_NAME}"
        assert g.cat(unit) == guest_probe.unit() and g.statns(unit)["st_mode"] & 0o7777 == 0o644
        assert g.readlink(f"/etc/systemd/system/multi-user.target.wants/{guest_probe.UNIT_NAME}") == unit


def _refused(image, tmp_path, root) -> str:
    overlay = qemu_img.overlay(image, tmp_path / "overlay.qcow2")
    with pytest.raises(inject_host.HostInjectRefused) as exc:
        inject_host.inject_probe(overlay, root, tmp_path, settle_seconds=10)
    # refused before any write: the overlay still reads exactly as the image under it
    same = subprocess.run(["qemu-img", "compare", "-q", str(overlay), str(image)], capture_output=True)
    assert same.returncode == 0, same.stdout + same.stderr
    return exc.value.message


def test_another_filesystem_or_offset_is_refused(image, tmp_path):
    other = str(uuidlib.uuid4())
    assert f"is {FS_UUID}, not {other}" in _refused(image, tmp_path, inject_host.OwnRoot(OFFSET, other))
    (tmp_path / "b").mkdir()
    assert "no ext4 superblock at byte 0" in _refused(image, tmp_path / "b", inject_host.OwnRoot(0, FS_UUID))


def test_a_journal_waiting_for_recovery_is_refused(image, tmp_path):
    dirty = tmp_path / "dirty.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(image), str(dirty)], check=True)
    # the superblock's "needs recovery" flag (incompat 0x4), set through a raw view of the copy
    with fuse_export.raw_view(dirty, tmp_path / "rw.raw", writable=True) as raw:
        with open(raw, "r+b") as f:
            at = OFFSET + 1024 + 0x60
            f.seek(at)
            flags = int.from_bytes(f.read(4), "little") | 0x4
            f.seek(at)
            f.write(flags.to_bytes(4, "little"))
    (tmp_path / "w").mkdir()
    assert "journal needs recovery" in _refused(dirty, tmp_path / "w", inject_host.OwnRoot(OFFSET, FS_UUID))


ON_HOST = """
import logging, sys
from pathlib import Path
from builder.runner import inject_host
from builder.runner.verify import VerifyTarget, _inject_on_host
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
image, overlay, work, offset, uuid = sys.argv[1:]
target = VerifyTarget(image=Path(image), name="t", arch="x86_64", firmware="bios",
                      own_root=inject_host.OwnRoot(int(offset), uuid))
print("ROUTE", _inject_on_host(target, Path(overlay), Path(work)))
"""


def test_verify_steps_aside_to_libguestfs_when_the_host_route_does_not_apply(image, tmp_path, caplog):
    target = VerifyTarget(image=image, name="t", arch="x86_64", firmware="bios",
                          own_root=inject_host.OwnRoot(OFFSET, str(uuidlib.uuid4())))
    overlay = qemu_img.overlay(image, tmp_path / "overlay.qcow2")
    caplog.set_level("INFO", logger="ironforge")
    assert _inject_on_host(target, overlay, tmp_path) is None
    assert "the probe goes in through libguestfs" in caplog.text
    # the right filesystem, on a host without /dev/fuse: libguestfs, and the log says why
    r = without_dev_fuse(ON_HOST, image, overlay, tmp_path, OFFSET, FS_UUID)
    assert r.returncode == 0, r.stderr
    assert "ROUTE None" in r.stdout and "/dev/fuse cannot be opened" in r.stdout, r.stdout
    # and with it, on the same overlay: the host route
    target = dataclasses.replace(target, own_root=inject_host.OwnRoot(OFFSET, FS_UUID))
    assert _inject_on_host(target, overlay, tmp_path) == "host"
