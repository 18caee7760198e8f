"""converters.disk: our header parsers, then qemu-img info -f FMT as a cross-check, on real
images made by qemu-img and on hostile ones; every hostile one refused with its reason."""

from __future__ import annotations

import struct
import pytest

import converters_support as S
from builder.errors import UnsafeImageError
from converters.disk.check import cross_check, safe_disk
from converters.disk.detect import detect
GOOD = S.GOOD


@pytest.mark.parametrize("fmt,sub", GOOD)
def test_good_formats_detected_by_content_and_agreed_by_qemu(good, fmt, sub):
    hdr = detect(good[(fmt, sub)])
    assert hdr.format == fmt
    disk = safe_disk(good[(fmt, sub)])
    assert disk.format == fmt
    assert disk.virtual_size >= S.SIZE
    if fmt == "vmdk" and sub in ("monolithicFlat", "twoGbMaxExtentSparse"):
        assert len(hdr.files) >= 2 and all(f.parent == good[(fmt, sub)].parent for f in hdr.files)


def test_detection_ignores_the_extension(good, tmp_path):
    p = tmp_path / "disk.img"
    p.write_bytes(good[("vdi", None)].read_bytes())
    assert detect(p).format == "vdi"


def _refused(path, match):
    with pytest.raises(UnsafeImageError, match=match) as ei:
        safe_disk(path)
    assert "refused" in ei.value.message or "not a readable" in ei.value.message
    return ei.value


def test_qcow2_backing_file_refused(tmp_path):
    sent, _ = S.sentinel(tmp_path)
    h = tmp_path / "h.qcow2"
    S.qimg("create", "-q", "-f", "qcow2", "-u", "-b", sent, "-F", "raw", h, "16M")
    err = _refused(h, "backing file")
    assert str(sent) in err.message


def test_qcow2_json_backing_refused(tmp_path):
    sent, _ = S.sentinel(tmp_path)
    h = tmp_path / "h.qcow2"
    S.qimg("create", "-q", "-f", "qcow2", "-u", "-b",
           f'json:{{"driver":"raw","file":{{"driver":"file","filename":"{sent}"}}}}', "-F", "raw", h, "16M")
    _refused(h, "backing file 'json:")


def test_qcow2_data_file_refused(tmp_path):
    h, data = tmp_path / "h.qcow2", tmp_path / "data.raw"
    S.qimg("create", "-q", "-f", "qcow2", "-o", f"data_file={data}", h, "16M")
    _refused(h, "external data file")


def test_qcow2_unknown_incompatible_bit_refused(good, tmp_path):
    h = tmp_path / "h.qcow2"
    b = bytearray(good[("qcow2", None)].read_bytes())
    b[72:80] = struct.pack(">Q", 1 << 40)
    h.write_bytes(b)
    _refused(h, "unknown incompatible feature bits")


def test_vmdk_absolute_extent_refused(tmp_path):
    sent, _ = S.sentinel(tmp_path)
    d = tmp_path / "in"
    d.mkdir()
    (d / "abs.vmdk").write_text('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
                                f'createType="monolithicFlat"\nRW 32768 FLAT "{sent}" 0\n')
    _refused(d / "abs.vmdk", "absolute path")


def test_vmdk_dotdot_extent_refused(tmp_path):
    S.sentinel(tmp_path)
    d = tmp_path / "in"
    d.mkdir()
    (d / "up.vmdk").write_text('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
                               'createType="monolithicFlat"\nRW 32768 FLAT "../sentinel" 0\n')
    _refused(d / "up.vmdk", r"goes up a folder")


def test_vmdk_extent_symlinked_out_refused(tmp_path):
    sent, _ = S.sentinel(tmp_path)
    d = tmp_path / "in"
    d.mkdir()
    (d / "flat.bin").symlink_to(sent)
    (d / "ln.vmdk").write_text('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
                               'createType="monolithicFlat"\nRW 32768 FLAT "flat.bin" 0\n')
    _refused(d / "ln.vmdk", "through a symlink")


def test_vmdk_delta_with_parent_hint_refused(tmp_path, good):
    d = tmp_path / "in"
    d.mkdir()
    (d / "parent.vmdk").write_bytes(good[("vmdk", None)].read_bytes())
    S.qimg("create", "-q", "-f", "vmdk", "-b", "parent.vmdk", "-F", "vmdk", d / "delta.vmdk")
    _refused(d / "delta.vmdk", "delta")


def _patch_vhd_type(src, dst, disk_type):
    b = bytearray(src.read_bytes())
    for off in (0, len(b) - 512):
        if b[off:off + 8] == b"conectix":
            b[off + 60:off + 64] = struct.pack(">I", disk_type)
    dst.write_bytes(b)


def test_vhd_differencing_refused(good, tmp_path):
    _patch_vhd_type(good[("vpc", "dynamic")], tmp_path / "diff.vhd", 4)
    _refused(tmp_path / "diff.vhd", "differencing")


def test_vdi_differencing_refused(good, tmp_path):
    b = bytearray(good[("vdi", None)].read_bytes())
    b[76:80] = struct.pack("<I", 4)
    (tmp_path / "diff.vdi").write_bytes(b)
    _refused(tmp_path / "diff.vdi", "differencing")


def test_raw_with_a_qcow2_name_refused(tmp_path):
    p = tmp_path / "looks.qcow2"
    p.write_bytes(b"\0" * (1 << 20))
    _refused(p, "the name says qcow2")


def test_protocol_looking_name_refused(tmp_path):
    p = tmp_path / "nbd:localhost:10809"
    p.write_bytes(b"\0" * (1 << 20))
    _refused(p, "protocol string")


def test_vdi_whose_size_lies_refused(good, tmp_path):
    b = bytearray(good[("vdi", None)].read_bytes())
    b[368:376] = struct.pack("<Q", S.SIZE * 2)
    (tmp_path / "lie.vdi").write_bytes(b)
    with pytest.raises(UnsafeImageError, match="not a readable disk image"):
        safe_disk(tmp_path / "lie.vdi")


def test_qemu_disagreeing_with_our_parser_refused(good):
    """The cross-check itself, with real qemu-img: a header reading that differs from qemu's."""
    import dataclasses
    hdr = detect(good[("qcow2", None)])
    with pytest.raises(UnsafeImageError, match="must not disagree"):
        cross_check(dataclasses.replace(hdr, virtual_size=S.SIZE * 2))


def test_device_node_is_not_a_disk():
    with pytest.raises(UnsafeImageError, match="not a regular file"):
        detect(__import__("pathlib").Path("/dev/null"))


def test_qemu_never_probes_a_raw_file_holding_a_qcow2_header(tmp_path):
    # the planted header is parsed by us as qcow2 (and its backing refused) — never handed to qemu as raw
    sent, _ = S.sentinel(tmp_path)
    h = tmp_path / "h.qcow2"
    S.qimg("create", "-q", "-f", "qcow2", "-u", "-b", sent, "-F", "raw", h, "16M")
    planted = tmp_path / "guest.img"
    planted.write_bytes(h.read_bytes() + b"\0" * (1 << 20))
    _refused(planted, "backing file")


def test_vhdx_differencing_refused(good, tmp_path):
    """HasParent set in the File Parameters item (qemu-img cannot make a differencing VHDX)."""
    import uuid
    from converters.disk import vhdx
    src = good[("vhdx", None)]
    meta_off, _ = vhdx._metadata_region(src)
    b = bytearray(src.read_bytes())
    count = struct.unpack("<H", b[meta_off + 10:meta_off + 12])[0]
    for i in range(count):
        e = meta_off + 32 + 32 * i
        if uuid.UUID(bytes_le=bytes(b[e:e + 16])) == vhdx.FILE_PARAMETERS:
            item = meta_off + struct.unpack("<I", b[e + 16:e + 20])[0]
            flags = struct.unpack("<I", b[item + 4:item + 8])[0] | vhdx.HAS_PARENT
            b[item + 4:item + 8] = struct.pack("<I", flags)
    (tmp_path / "diff.vhdx").write_bytes(b)
    _refused(tmp_path / "diff.vhdx", "differencing disk")


def test_sparse_vmdk_whose_embedded_descriptor_names_a_flat_extent_refused(good, tmp_path):
    src = good[("vmdk", None)]
    b = bytearray(src.read_bytes())
    desc_off = struct.unpack("<Q", b[28:36])[0] * 512
    text = bytes(b[desc_off:desc_off + 1024])
    patched = text.replace(b'SPARSE "', b'FLAT   "', 1)
    assert patched != text
    b[desc_off:desc_off + 1024] = patched
    (tmp_path / "e.vmdk").write_bytes(b)
    _refused(tmp_path / "e.vmdk", "FLAT extent")


def test_truncated_dynamic_vhd_refused_not_crashed(good, tmp_path):
    b = good[("vpc", "dynamic")].read_bytes()
    (tmp_path / "cut.vhd").write_bytes(b[:512 + 600])
    with pytest.raises(UnsafeImageError, match="refused"):
        detect(tmp_path / "cut.vhd")
