"""builder.exports.disks through `ironforge export`: each disk is what its platform needs
(qemu-img info/check) and holds exactly the source's guest-visible bytes (qemu-img compare)."""

from __future__ import annotations

import json
import struct
import subprocess

import pytest

from exports_support import SIZE

MiB = 1 << 20
# published file -> (qemu format, qemu-img check supports it)
DISKS = {"tiny.qcow2": ("qcow2", True), "tiny.raw": ("raw", False), "tiny.vmdk": ("vmdk", True),
         "tiny.vhdx": ("vhdx", True), "tiny.vhd": ("vpc", False), "tiny.vdi": ("vdi", True)}


def info(path, fmt):
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-f", fmt, str(path)],
                                     check=True, capture_output=True, text=True).stdout)


@pytest.mark.parametrize("name", sorted(DISKS))
def test_disk_is_intact_and_identical_to_source(exported, name):
    fmt, checkable = DISKS[name]
    path = exported.dir / name
    if checkable:
        subprocess.run(["qemu-img", "check", "-f", fmt, str(path)], check=True, capture_output=True)
    else:  # the format has no consistency metadata: qemu-img says so rather than passing it
        res = subprocess.run(["qemu-img", "check", "-f", fmt, str(path)], capture_output=True, text=True)
        assert "does not support checks" in res.stderr
    assert info(path, fmt)["format"] == fmt
    # identical guest-visible contents; a larger target (vhd-azure's MiB rounding) must be zero beyond
    subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", fmt, str(exported.src), str(path)],
                   check=True, capture_output=True)


def test_compare_would_notice_a_difference(exported, tmp_path):
    """The comparison above is not vacuous: one changed sector makes it fail."""
    changed = tmp_path / "changed.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(exported.src), str(changed)], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 20M 512", str(changed)], check=True,
                   capture_output=True)
    res = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "vdi", str(changed),
                          str(exported.dir / "tiny.vdi")], capture_output=True, text=True)
    assert res.returncode == 1 and "Content mismatch" in res.stdout


def test_qcow2_is_compressed(exported):
    out = json.loads(subprocess.run(["qemu-img", "check", "--output=json", "-f", "qcow2",
                                     str(exported.dir / "tiny.qcow2")], capture_output=True, text=True).stdout)
    assert out["compressed-clusters"] > 0 and out["compressed-clusters"] == out["allocated-clusters"]
    # zstd unless asked otherwise (QEMU 5.1+ reads it; --compression zlib for older readers)
    assert info(exported.dir / "tiny.qcow2", "qcow2")["format-specific"]["data"]["compression-type"] == "zstd"


def test_vmdk_is_stream_optimized_lsilogic_with_hwversion(exported):
    path = exported.dir / "tiny.vmdk"
    assert info(path, "vmdk")["format-specific"]["data"]["create-type"] == "streamOptimized"
    descriptor = path.read_bytes()[:64 << 10]
    assert b'ddb.adapterType = "lsilogic"' in descriptor
    assert b'ddb.virtualHWVersion = "14"' in descriptor


def test_vhd_azure_is_fixed_a_whole_mib_with_footer(exported):
    path = exported.dir / "tiny.vhd"
    data_bytes = path.stat().st_size - 512
    assert data_bytes % MiB == 0 and data_bytes == -(-SIZE // MiB) * MiB  # rounded up, not CHS
    with path.open("rb") as fh:
        fh.seek(data_bytes)
        footer = fh.read(512)
    assert footer[:8] == b"conectix"
    original, current = struct.unpack(">QQ", footer[40:56])
    disk_type = struct.unpack(">I", footer[60:64])[0]
    assert disk_type == 2                   # fixed (3 would be dynamic)
    assert original == current == data_bytes
    # a fixed VHD is probed as raw: only an explicit -f vpc reads the footer's size
    assert info(path, "vpc")["virtual-size"] == data_bytes


def test_vhdx_and_vdi_are_dynamic(exported):
    for name, fmt in (("tiny.vhdx", "vhdx"), ("tiny.vdi", "vdi")):
        path = exported.dir / name
        assert info(path, fmt)["virtual-size"] >= SIZE
        assert path.stat().st_size < SIZE    # sparse in the file format itself, not preallocated
