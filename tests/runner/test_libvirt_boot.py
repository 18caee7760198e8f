"""verify --via libvirt (builder.runner.libvirt_boot): a real libvirt daemon, started privately by
the test's own virsh, defines and starts our domain XML (builder.exports.libvirt_xml) over the
tiny guest's bootable disk (a stand-in for a built image: host kernel + busybox + the real probe,
booting from its own MBR/SYSLINUX); ironforge reads the ready marker from the serial log file."""

from __future__ import annotations

import hashlib

import pytest

from builder.runner import tinyguest
from builder.runner.verify import VerifyTarget, verify_image


@pytest.fixture(scope="module")
def bootable(tmp_path_factory) -> tinyguest.TinyGuest:
    return tinyguest.build(tmp_path_factory.mktemp("tiny-libvirt"), bootable_disk=True)


@pytest.mark.boot
def test_libvirt_defines_and_starts_our_domain_and_the_marker_arrives(bootable, tmp_path):
    disk = bootable.bootable_disk
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    target = VerifyTarget(image=disk, name="tiny-libvirt", arch="x86_64", firmware="bios", memory_mb=256,
                          inject=False, checks=("arch", "virtio-root"), timeout=420, stall=180, via="libvirt")
    r = verify_image(target, tmp_path / "evidence")
    assert r.ok, f"{r.reason}: {r.message}\n" + "\n".join(r.serial_tail)
    assert r.marker and r.marker.get("root", "").startswith("/dev/vd")
    serial = (tmp_path / "evidence" / "serial.log").read_text(errors="replace")
    assert "IRONFORGE-READY" in serial
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before   # the image itself was never written
    assert not list(tmp_path.glob("evidence/.verify-*"))              # nothing left behind
