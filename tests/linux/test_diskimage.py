import subprocess
import uuid

import pytest

from builder.errors import BuildError
from builder.linux import diskimage as di

G = 1024 ** 3
MiB = di.MiB


def test_ids_are_stable_per_recipe_name_and_differ_between_names():
    a, b, c = di.ids_for("debian-12-amd64"), di.ids_for("debian-12-amd64"), di.ids_for("debian-12-i386")
    assert a == b and a.root != c.root and a.root != a.disk
    assert a.root.version == 5
    assert len(a.esp_volid) == 8 and a.esp_uuid[4] == "-"


@pytest.mark.parametrize("table,firmware,names", [
    ("mbr", "bios", ["root"]),
    ("gpt", "bios", ["bios_boot", "root"]),
    ("gpt", "uefi", ["esp", "root"]),
    ("mbr", "uefi", ["esp", "root"]),
])
def test_layouts_are_aligned_and_fill_the_disk(table, firmware, names):
    lay = di.layout(4 * G, table, firmware)
    assert [p.name for p in lay.partitions] == names
    assert [p.number for p in lay.partitions] == list(range(1, len(names) + 1))
    pos = MiB
    for p in lay.partitions:
        assert p.start == pos and p.start % MiB == 0 and p.size % MiB == 0
        pos += p.size
    assert pos == 4 * G - (di.GPT_TAIL if table == "gpt" else 0)
    assert lay.root.device == f"/dev/sda{len(names)}"


def test_bad_layout_requests_are_refused():
    with pytest.raises(BuildError):
        di.layout(4 * G, "apm")
    with pytest.raises(BuildError, match="no room"):
        di.layout(100 * MiB)


def _sfdisk_dump(raw):
    return subprocess.run(["sfdisk", "-d", str(raw)], capture_output=True, text=True, check=True).stdout


def _blkid(raw, offset):
    out = subprocess.run(["blkid", "-p", "-O", str(offset), "-o", "export", str(raw)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.mark.parametrize("table,firmware", [("mbr", "bios"), ("gpt", "bios"), ("gpt", "uefi")])
def test_build_raw_writes_table_and_filesystems_in_place(tmp_path, table, firmware):
    # real sfdisk, mke2fs -d and mkfs.fat on a small sparse file; read back with sfdisk and blkid
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hello").write_text("hi\n")
    lay = di.layout(600 * MiB, table, firmware)
    ids = di.ids_for(f"test-{table}-{firmware}")
    raw = tmp_path / "disk.raw"
    di.build_raw(raw, lay, ids, tree, epoch=1700000000)
    dump = _sfdisk_dump(raw)
    assert f"label: {'gpt' if table == 'gpt' else 'dos'}" in dump
    for p in lay.partitions:
        assert f"start={p.start // 512:>12}, size={p.size // 512:>12}" in dump
    if table == "mbr":
        assert "bootable" in dump and ids.mbr_id in dump
    else:
        assert str(ids.disk).upper() in dump
    fs = _blkid(raw, lay.root.start)
    assert fs["TYPE"] == "ext4" and fs["UUID"] == str(ids.root) and fs["LABEL"] == "root"
    if firmware == "uefi":
        esp = _blkid(raw, lay.get("esp").start)
        assert esp["TYPE"] == "vfat" and esp["UUID"] == ids.esp_uuid
    qcow = tmp_path / "disk.qcow2"
    di.to_qcow2(raw, qcow)
    info = subprocess.run(["qemu-img", "info", "--output=json", str(qcow)], capture_output=True,
                          text=True, check=True).stdout
    assert '"format": "qcow2"' in info and f'"virtual-size": {lay.size}' in info


def test_tree_larger_than_the_partition_fails_naming_the_cause(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    with open(tree / "big", "wb") as f:
        f.write(b"\1" * (300 * MiB))
    lay = di.layout(257 * MiB)
    with pytest.raises(BuildError, match="mke2fs"):
        di.build_raw(tmp_path / "d.raw", lay, di.ids_for("x"), tree)


def test_fstab_uuid_helpers_are_strings():
    ids = di.ids_for("n")
    assert isinstance(ids.root, uuid.UUID) and str(ids.root).count("-") == 4


def test_the_bios_boot_type_is_grubs_own_guid():
    """GRUB embeds its core only in a partition of exactly this type: on disk (GPT's mixed-endian
    GUID layout) its 16 bytes read "Hah!IdontNeedEFI". A wrong GUID still boots an image whose
    core the disk stage writes from the host, but a later grub-install in the guest (a grub-pc
    upgrade) then finds "no BIOS Boot Partition" and stops."""
    import uuid as uuidmod

    from builder.linux import diskimage
    assert uuidmod.UUID(diskimage.GPT_TYPES["bios_boot"]).bytes_le == b"Hah!IdontNeedEFI"
