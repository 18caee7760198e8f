"""Every hostile input of the spec's list through the real import stage: refused with its
reason, and nothing in the stage's folder holds a byte of the sentinel host file (the guest view
of any qcow2 left behind is read too). Parser-level detail lives in the other test modules."""

from __future__ import annotations

import shutil
import struct
import tarfile
import zipfile

import pytest

import converters_support as S
from builder.errors import UnsafeImageError
from converters.stages import import_


def _descriptor(d, extent):
    d.mkdir()
    (d / "x.vmdk").write_text('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
                              f'createType="monolithicFlat"\nRW 32768 FLAT "{extent}" 0\n')
    return d / "x.vmdk"


def _ova(tmp, good, members):
    return S.tar_with(tmp / "h.ova", [(S.member("guest.ovf"), S.ovf_text(["d.vmdk"]).encode())] + members)


def qcow2_backing(tmp, sent, good):
    S.qimg("create", "-q", "-f", "qcow2", "-u", "-b", sent, "-F", "raw", tmp / "h.qcow2", "16M")
    return tmp / "h.qcow2"


def qcow2_json_backing(tmp, sent, good):
    S.qimg("create", "-q", "-f", "qcow2", "-u", "-b",
           f'json:{{"driver":"raw","file":{{"driver":"file","filename":"{sent}"}}}}', "-F", "raw", tmp / "h.qcow2", "16M")
    return tmp / "h.qcow2"


def qcow2_data_file(tmp, sent, good):
    data = tmp / "data.raw"
    S.qimg("create", "-q", "-f", "qcow2", "-o", f"data_file={data}", tmp / "h.qcow2", "16M")
    shutil.copy(sent, data)      # the data file now holds the host's secret
    return tmp / "h.qcow2"


def vmdk_absolute_extent(tmp, sent, good):
    return _descriptor(tmp / "in", sent)


def vmdk_dotdot_extent(tmp, sent, good):
    return _descriptor(tmp / "in", "../sentinel")


def vmdk_delta(tmp, sent, good):
    """A delta whose parent's data is the host secret: following the parent would leak it."""
    d = _descriptor(tmp / "in", "parent-flat.vmdk").parent
    (d / "x.vmdk").rename(d / "parent.vmdk")
    shutil.copy(sent, d / "parent-flat.vmdk")
    S.qimg("create", "-q", "-f", "vmdk", "-b", "parent.vmdk", "-F", "vmdk", d / "delta.vmdk")
    return d / "delta.vmdk"


def vhd_differencing(tmp, sent, good):
    b = bytearray(good[("vpc", "dynamic")].read_bytes())
    for off in (0, len(b) - 512):
        b[off + 60:off + 64] = struct.pack(">I", 4)
    (tmp / "d.vhd").write_bytes(b)
    return tmp / "d.vhd"


def ova_dotdot(tmp, sent, good):
    return _ova(tmp, good, [(S.member("../d.vmdk"), b"x")])


def ova_absolute(tmp, sent, good):
    return _ova(tmp, good, [(S.member(str(tmp / "abs.vmdk")), b"x")])


def ova_symlink_out(tmp, sent, good):
    return _ova(tmp, good, [(S.member("d.vmdk", tarfile.SYMTYPE, str(sent)), None)])


def ova_hardlink_out(tmp, sent, good):
    return _ova(tmp, good, [(S.member("d.vmdk", tarfile.LNKTYPE, str(sent)), None)])


def ova_device(tmp, sent, good):
    return _ova(tmp, good, [(S.member("d.vmdk", tarfile.BLKTYPE), None)])


def ova_mf_mismatch(tmp, sent, good):
    f = S.write_ova_folder(tmp / "o", [good[("vmdk", "streamOptimized")]], mf_algo="SHA1")
    lines = (f / "guest.mf").read_bytes().split(b"\r\n")
    lines[-2] = lines[-2][:-1] + (b"0" if lines[-2][-1:] != b"0" else b"1")   # the disk's digest, one digit off
    (f / "guest.mf").write_bytes(b"\r\n".join(lines))
    return S.pack_tar(f, tmp / "h.ova")


def ovf_entity(tmp, sent, good):
    f = tmp / "o"
    f.mkdir()
    (f / "guest.ovf").write_text(f'<!DOCTYPE e [<!ENTITY x SYSTEM "file://{sent}">]><Envelope>&x;</Envelope>')
    return S.pack_tar(f, tmp / "h.ova")


def ovf_oversize(tmp, sent, good):
    f = tmp / "o"
    f.mkdir()
    (f / "guest.ovf").write_text("<Envelope>" + " " * (5 << 20) + "</Envelope>")
    return S.pack_tar(f, tmp / "h.ova", "w:xz")


def ovf_href_outside(tmp, sent, good):
    f = S.write_ova_folder(tmp / "o", [good[("vmdk", "streamOptimized")]], mf_algo=None, hrefs=["../sentinel"])
    return S.pack_tar(f, tmp / "h.ova")


def vmx_absolute(tmp, sent, good):
    (tmp / "v.vmx").write_text(f'displayName = "x"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "{sent}"\n')
    return tmp / "v.vmx"


def libvirt_block(tmp, sent, good):
    (tmp / "d.xml").write_text("<domain><name>x</name><devices><disk type='block' device='disk'>"
                               "<source dev='/dev/sda'/></disk></devices></domain>")
    return tmp / "d.xml"


def libvirt_network(tmp, sent, good):
    (tmp / "d.xml").write_text("<domain><name>x</name><devices><disk type='network' device='disk'>"
                               "<source protocol='nbd' name='x'><host name='127.0.0.1'/></source></disk>"
                               "</devices></domain>")
    return tmp / "d.xml"


def zip_bomb(tmp, sent, good):
    with zipfile.ZipFile(tmp / "h.ova", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("guest.ovf", S.ovf_text(["d.vmdk"]))
        zf.writestr("d.vmdk", b"\0" * (64 << 20))
    return tmp / "h.ova"


def ploop_outside(tmp, sent, good):
    b = tmp / "root.hdd"
    b.mkdir()
    (b / "DiskDescriptor.xml").write_text("<Parallels_disk_image><StorageData><Storage><Image><Type>Plain</Type>"
                                          f"<File>{sent}</File></Image></Storage></StorageData></Parallels_disk_image>")
    return b


def raw_named_qcow2(tmp, sent, good):
    shutil.copy(sent, tmp / "disk.qcow2")
    return tmp / "disk.qcow2"


CASES = {
    qcow2_backing: "backing file", qcow2_json_backing: "backing file 'json:", qcow2_data_file: "external data file",
    vmdk_absolute_extent: "absolute path", vmdk_dotdot_extent: "goes up a folder", vmdk_delta: "delta",
    vhd_differencing: "differencing", ova_dotdot: "goes up a folder", ova_absolute: "absolute name",
    ova_symlink_out: "symlink", ova_hardlink_out: "hard link", ova_device: "block device",
    ova_mf_mismatch: "the manifest says", ovf_entity: "DTD or entities", ovf_oversize: "larger than 4 MiB",
    ovf_href_outside: "goes up a folder", vmx_absolute: "absolute path", libvirt_block: "type 'block'",
    libvirt_network: r"type 'network' \(nbd\)", zip_bomb: "zip bomb", ploop_outside: "absolute path",
    raw_named_qcow2: "the name says qcow2",
}


@pytest.mark.parametrize("make,reason", list(CASES.items()), ids=[f.__name__ for f in CASES])
def test_hostile_input_refused_by_the_import_stage(good, tmp_path, make, reason):
    sent, marker = S.sentinel(tmp_path)
    case = tmp_path / "case"
    case.mkdir()
    src = make(case, sent, good)
    ctx = S.stage_context(tmp_path, [src])
    with pytest.raises(UnsafeImageError, match=reason) as ei:
        import_.run(ctx, {})
    assert "refused" in ei.value.message
    S.assert_no_sentinel(ctx.workdir, marker)
    assert not (ctx.workdir / ".source").exists()
    assert not (tmp_path / "abs.vmdk").exists() and not (tmp_path / "d.vmdk").exists()
