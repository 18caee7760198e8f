"""builder/host/guest_os.py, in one real libguestfs launch over small hand-made disks: a root
filesystem whose fstab names a /boot filesystem on a second disk and a /srv/data "filesystem" on
a blank third disk (so it cannot mount); a fourth disk holds a second operating system."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder import qemu_img
from builder.errors import BuildError, GuestfsError, VerifyError
from builder.host import guest_os
from builder.host.accel import choose
from builder.host.guestfs_session import Drive, session

MiB = 1024 * 1024


def _mkfs(dest: Path, label: str, tree: Path, size: str) -> Path:
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-d", str(tree), str(dest), size],
                   check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def disks(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("guest-os")
    root = d / "root"
    for sub in ("etc", "bin", "boot", "srv/data"):
        (root / sub).mkdir(parents=True)
    (root / "etc/fstab").write_text("LABEL=root / ext4 defaults 0 1\nLABEL=boot /boot ext4 defaults 0 2\n"
                                    "/dev/sdc /srv/data ext4 defaults 0 2\n")
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Debian GNU/Linux"\n')
    boot = d / "boot"
    boot.mkdir()
    (boot / "on-the-boot-fs").write_text("boot\n")
    blank = d / "blank.raw"
    blank.write_bytes(bytes(MiB))
    other = d / "other"
    for sub in ("etc", "bin"):
        (other / sub).mkdir(parents=True)
    (other / "etc/fstab").write_text("LABEL=other / ext4 defaults 0 1\n")
    (other / "etc/os-release").write_text('ID=debian\nVERSION_ID="13"\nNAME="Debian GNU/Linux"\n')
    return {"root": _mkfs(d / "root.raw", "root", root, "64M"), "boot": _mkfs(d / "boot.raw", "boot", boot, "16M"),
            "blank": blank, "other": _mkfs(d / "other.raw", "other", other, "16M")}


def _own_data(overlay: Path) -> int:
    """Bytes the overlay itself holds (not its backing file); -U: QEMU may have it open."""
    extents = json.loads(qemu_img.run(["map", "-U", "--output=json", str(overlay)], "test map"))
    return sum(e["length"] for e in extents if e["data"] and e["depth"] == 0)


def test_find_mount_refuse_skip_and_trim_in_one_launch(disks, tmp_path):
    overlay = qemu_img.overlay(disks["root"], tmp_path / "root.qcow2", backing_format="raw")
    drives = [Drive(overlay, "qcow2", readonly=False, discard="besteffort"),
              Drive(disks["boot"], "raw"), Drive(disks["blank"], "raw"), Drive(disks["other"], "raw")]
    accel = choose()
    with session(drives, accel, what="guest_os test") as g:
        # the session's own handle carries the accelerator choice (TCG on a PVM host)
        assert ("force_tcg" in g.get_backend_settings()) == (not accel.kvm)
        # by default a disk with two operating systems is refused before anything is mounted
        with pytest.raises(BuildError, match="more than one operating system") as e:
            guest_os.mount_os(g, what="strict")
        assert type(e.value) is BuildError and g.mounts() == []
        # by default a filesystem that will not mount is an error
        with pytest.raises(GuestfsError, match="mount"):
            guest_os.mount_os(g, what="strict", first_of_several=True)
        g.umount_all()
        # the OS type is checked before anything is mounted, with the caller's error and hint
        with pytest.raises(VerifyError, match="holds a linux system, not Windows") as e:
            guest_os.mount_os(g, what="typed", error=VerifyError, want_type="windows", type_hint="a hint",
                              first_of_several=True)
        assert e.value.hint == "a hint" and g.mounts() == []

        with guest_os.opened(g, what="lenient", first_of_several=True, skip_unmountable=True) as guest:
            assert (guest.root, guest.type) == ("/dev/sda", "linux")
            assert guest.mountpoints == ("/", "/boot")             # outermost first; /srv/data left out
            assert guest.devices == {"/": "/dev/sda", "/boot": "/dev/sdb", "/srv/data": "/dev/sdc"}
            assert g.cat("/boot/on-the-boot-fs") == "boot\n"      # /boot is over /, not under it
            g.fill(0x55, 16 * MiB, "/junk")
            g.sync()
            written = _own_data(overlay)
            g.rm("/junk")
        assert g.mounts() == []                                   # unmounted on the way out
    assert written >= 16 * MiB
    assert _own_data(overlay) < 4 * MiB                           # the fstrim gave the clusters back
