"""converters.ova / ovf / manifest: OVAs as tar, tar.gz, tar.xz, zip and folder, .mf SHA1 and
SHA256 checked, OVF read with its units; hostile OVAs refused with the reason."""

from __future__ import annotations

import shutil
import zipfile

import pytest

import converters_support as S
from builder.errors import UnsafeImageError
from converters.ova import open_ova
from converters.ovf import parse as parse_ovf


@pytest.fixture(scope="module")
def ova_folder(good, tmp_path_factory):
    d = tmp_path_factory.mktemp("ova") / "folder"
    disk = d.parent / "guest-disk1.vmdk"
    shutil.copy(good[("vmdk", "streamOptimized")], disk)
    return S.write_ova_folder(d, [disk], mf_algo="SHA256")


def _zip(folder, out):
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, p.name)
    return out


@pytest.mark.parametrize("kind", ["folder", "tar", "tar.gz", "tar.xz", "zip"])
def test_ova_containers_give_the_same_vm(ova_folder, tmp_path, kind):
    if kind == "folder":
        src = ova_folder
    elif kind == "zip":
        src = _zip(ova_folder, tmp_path / "g.ova")
    else:
        mode = {"tar": "w", "tar.gz": "w:gz", "tar.xz": "w:xz"}[kind]
        src = S.pack_tar(ova_folder, tmp_path / f"g.{kind}", mode)
    vm = open_ova(src, tmp_path / "private")
    assert (vm.name, vm.vcpus, vm.cores_per_socket, vm.memory_mib, vm.firmware) == ("vmware-guest", 4, 2, 2048, "uefi")
    assert [d.format for d in vm.disks] == ["vmdk"] and vm.disks[0].bus == "scsi"
    assert vm.disks[0].path.name == "guest-disk1.vmdk"
    assert [(n.mac, n.model, n.network) for n in vm.nics] == [("00:50:56:aa:bb:cc", "VmxNet3", "VM Network")]
    assert any("digests verified" in n for n in vm.notes)
    if kind != "folder":
        assert tmp_path / "private" in vm.disks[0].path.parents


def test_sha1_manifest_with_crlf(good, tmp_path):
    disk = tmp_path / "d.vmdk"
    shutil.copy(good[("vmdk", "streamOptimized")], disk)
    f = S.write_ova_folder(tmp_path / "o", [disk], mf_algo="SHA1")
    assert b"\r\n" in (f / "guest.mf").read_bytes()
    vm = open_ova(S.pack_tar(f, tmp_path / "o.ova"), tmp_path / "p")
    assert "guest.mf: 2 digests verified" in vm.notes


@pytest.mark.parametrize("units,qty,mib", [("byte * 2^20", 3072, 3072), ("byte * 2^30", 3, 3072),
                                           ("MegaBytes", 512, 512), ("byte * 1024 * 1024", 1024, 1024),
                                           ("KB", 1048576, 1024)])
def test_memory_allocation_units(tmp_path, good, units, qty, mib):
    disk = tmp_path / "d.vmdk"
    shutil.copy(good[("vmdk", None)], disk)
    f = S.write_ova_folder(tmp_path / "o", [disk], mf_algo=None, mem_qty=qty, mem_units=units)
    assert parse_ovf(f / "guest.ovf", f).memory_mib == mib


def test_manifest_mismatch_refused(ova_folder, tmp_path):
    f = tmp_path / "o"
    shutil.copytree(ova_folder, f)
    with open(f / "guest-disk1.vmdk", "r+b") as fh:
        fh.seek(100000)
        fh.write(b"tampered")
    with pytest.raises(UnsafeImageError, match="SHA256 of 'guest-disk1.vmdk' is .*the manifest says"):
        open_ova(S.pack_tar(f, tmp_path / "t.ova"), tmp_path / "p")


def test_billion_laughs_ovf_refused(tmp_path):
    f = tmp_path / "o"
    f.mkdir()
    (f / "guest.ovf").write_text('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                                 '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                                 '<Envelope>&lol2;</Envelope>')
    with pytest.raises(UnsafeImageError, match="DTD or entities"):
        open_ova(f, tmp_path / "p")


def test_external_entity_ovf_refused(tmp_path):
    sent, _ = S.sentinel(tmp_path)
    f = tmp_path / "o"
    f.mkdir()
    (f / "guest.ovf").write_text(f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file://{sent}">]>'
                                 '<Envelope><VirtualSystem><Name>&x;</Name></VirtualSystem></Envelope>')
    with pytest.raises(UnsafeImageError, match="DTD or entities"):
        open_ova(f, tmp_path / "p")


def test_oversize_ovf_refused(tmp_path):
    f = tmp_path / "o"
    f.mkdir()
    (f / "guest.ovf").write_text("<Envelope>" + " " * (5 << 20) + "</Envelope>")
    with pytest.raises(UnsafeImageError, match="larger than 4 MiB"):
        open_ova(f, tmp_path / "p")


@pytest.mark.parametrize("href,match", [("../sentinel", "goes up a folder"), ("SENT", "absolute path"),
                                        ("http://example.com/d.vmdk", "protocol string")])
def test_href_outside_refused(tmp_path, good, href, match):
    sent, marker = S.sentinel(tmp_path)
    disk = tmp_path / "d.vmdk"
    shutil.copy(good[("vmdk", None)], disk)
    f = S.write_ova_folder(tmp_path / "o", [disk], mf_algo=None,
                           hrefs=[str(sent) if href == "SENT" else href])
    with pytest.raises(UnsafeImageError, match=match):
        open_ova(S.pack_tar(f, tmp_path / "h.ova"), tmp_path / "p")
    S.assert_no_sentinel(tmp_path / "p", marker)


def test_two_ovfs_refused(ova_folder, tmp_path):
    f = tmp_path / "o"
    shutil.copytree(ova_folder, f)
    shutil.copy(f / "guest.ovf", f / "other.ovf")
    with pytest.raises(UnsafeImageError, match="exactly one .ovf"):
        open_ova(S.pack_tar(f, tmp_path / "two.ova"), tmp_path / "p")


def _gz_ova(tmp_path, good, payload: bytes | None = None):
    import gzip
    disk = tmp_path / "d.vmdk"
    shutil.copy(good[("vmdk", "streamOptimized")], disk)
    f = S.write_ova_folder(tmp_path / "o", [disk], mf_algo=None, hrefs=["d.vmdk.gz"])
    (f / "d.vmdk.gz").write_bytes(gzip.compress(payload if payload is not None else disk.read_bytes()))
    (f / "d.vmdk").unlink()
    ovf = f / "guest.ovf"
    # capacity 16 × 2^20 bytes (the template's units): the inflation limit
    ovf.write_text(ovf.read_text().replace('ovf:href="d.vmdk.gz"', 'ovf:href="d.vmdk.gz" ovf:compression="gzip"'))
    return S.pack_tar(f, tmp_path / "gz.ova")


def test_gzip_compressed_disk_reference_is_inflated_privately(good, tmp_path):
    vm = open_ova(_gz_ova(tmp_path, good), tmp_path / "p")
    assert vm.disks[0].path == tmp_path / "p" / "inflated" / "d.vmdk"
    assert vm.disks[0].path.read_bytes() == good[("vmdk", "streamOptimized")].read_bytes()


def test_gzip_bomb_disk_reference_refused(good, tmp_path):
    with pytest.raises(UnsafeImageError, match="gzip bomb"):
        open_ova(_gz_ova(tmp_path, good, payload=b"\0" * (96 << 20)), tmp_path / "p")
