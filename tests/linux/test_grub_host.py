"""GRUB from the host: the boot-sector and core-image patching, where the core goes, the
grub.cfg written, and refusals. The real images made this way are read back in
tests/stages/test_disk.py and booted (amd64, i386, UEFI) by the e2e and verify tests."""

import struct

import pytest

from builder.errors import BuildError
from builder.linux import bootloader, diskimage, grub_host

UUID = "42480258-28c2-50ad-b486-91f839b4b818"


def boot_img() -> bytes:
    # a boot.img-shaped sector: code bytes, a kernel-sector slot holding GRUB's default (1), the
    # drive-check jump, and the signature; the real one comes from the guest's /usr/lib/grub
    b = bytearray(b"\xeb\x63\x90" + bytes(range(256)) * 2)[:512]
    b[0x5c:0x64] = struct.pack("<Q", 1)
    b[0x66:0x68] = b"\x74\x05"
    b[510:512] = b"\x55\xaa"
    return bytes(b)


def mbr() -> bytes:
    m = bytearray(512)
    m[0x1b8:0x1bc] = b"\x12\x34\x56\x78"
    m[0x1be:0x1ce] = bytes([0x80, 0, 0, 0, 0x83, 0, 0, 0]) + struct.pack("<II", 2048, 4096)
    m[510:512] = b"\x55\xaa"
    return bytes(m)


def test_boot_sector_keeps_the_disk_id_and_partition_table():
    out = grub_host.patch_boot_sector(mbr(), boot_img(), 2048)
    assert out[0x1b8:] == mbr()[0x1b8:]
    assert out[:0x5c] == boot_img()[:0x5c]
    assert struct.unpack_from("<Q", out, 0x5c)[0] == 2048
    assert out[0x66:0x68] == b"\x90\x90"        # hard disk: no drive-number check


@pytest.mark.parametrize("bad", [b"\0" * 512, b"\x55\xaa", boot_img()[:510] + b"\0\0"])
def test_a_boot_img_that_is_not_a_boot_sector_is_refused(bad):
    with pytest.raises(BuildError, match="boot.img"):
        grub_host.patch_boot_sector(mbr(), bad, 1)


def test_core_blocklist_covers_the_rest_of_the_core():
    core = b"\xaa" * (512 * 3 + 100)            # 4 sectors once padded
    out = grub_host.patch_core(core, 2048)
    assert len(out) == 512 * 4 and out[512 * 3 + 100:] == b"\0" * 412
    assert struct.unpack_from("<QHH", out, 500) == (2049, 3, 0x820)
    assert out[:500] == core[:500] and out[512:512 * 3 + 100] == core[512:]


def test_core_goes_after_the_mbr_or_into_the_bios_boot_partition():
    mbr_lay = diskimage.layout(4 << 30, "mbr", "bios")
    gpt_lay = diskimage.layout(4 << 30, "gpt", "bios")
    assert grub_host.core_location(mbr_lay, 30_000) == 1
    assert grub_host.core_location(gpt_lay, 30_000) == gpt_lay.get("bios_boot").start // 512
    with pytest.raises(BuildError, match="does not fit"):
        grub_host.core_location(mbr_lay, 1 << 20)
    with pytest.raises(BuildError, match="does not fit"):
        grub_host.core_location(gpt_lay, (1 << 20) + 1)


def test_boot_blocks_land_in_the_raw_file(tmp_path):
    lay = diskimage.layout(4 << 30, "mbr", "bios")
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.write(mbr())
        f.truncate(4 << 20)
    core = bytes([7]) * 2000
    assert grub_host.install_boot_blocks(raw, boot_img(), core, lay) == 1
    data = raw.read_bytes()
    assert data[0x1be:0x1ce] == mbr()[0x1be:0x1ce] and struct.unpack_from("<Q", data, 0x5c)[0] == 1
    assert struct.unpack_from("<QHH", data, 512 + 500) == (2, 3, 0x820)
    assert data[1024:512 + 2000] == core[512:] and data[512 * 5:512 * 6] == b"\0" * 512


def test_grub_cfg_boots_the_newest_kernel_by_uuid_on_the_serial_console():
    lay = diskimage.layout(4 << 30, "mbr", "bios")
    cfg = grub_host.grub_cfg(UUID, lay, ["6.1.0-9-amd64", "6.1.0-10-amd64"])
    assert bootloader.check_grub_cfg(cfg, UUID) == []
    entries = [ln.split("Linux ", 1)[1].split("'")[0] for ln in cfg.splitlines() if ln.startswith("menuentry")]
    assert entries == ["6.1.0-10-amd64", "6.1.0-9-amd64"]       # numeric, not text, order
    assert "serial --speed=115200" in cfg and "terminal_output console serial" in cfg
    assert "--hint-bios=hd0,msdos1" in cfg and "insmod part_msdos" in cfg
    gpt = grub_host.grub_cfg(UUID, diskimage.layout(4 << 30, "gpt", "uefi"), ["6.1.0-9-amd64"])
    assert "--hint-bios=hd0,gpt2" in gpt and "insmod part_gpt" in gpt
    with pytest.raises(BuildError, match="no kernel"):
        grub_host.grub_cfg(UUID, lay, [])


def test_the_embedded_config_finds_root_by_uuid():
    lay = diskimage.layout(4 << 30, "gpt", "bios")
    assert grub_host.load_cfg(UUID, lay) == (f"search.fs_uuid {UUID} root hd0,gpt2\n"
                                            "set prefix=($root)'/boot/grub'\n")


@pytest.mark.parametrize("firmware,pkg", [("bios", "grub-pc"), ("uefi", "grub-efi-amd64")])
def test_a_tree_without_grub_is_refused_naming_the_package(tmp_path, firmware, pkg):
    lay = diskimage.layout(4 << 30, "gpt" if firmware == "uefi" else "mbr", firmware)
    with pytest.raises(BuildError, match=pkg):
        grub_host.prepare_tree(tmp_path, firmware, lay, UUID, ["6.1.0-9-amd64"])
    assert not (tmp_path / "boot").exists() and not (tmp_path / "run").exists()


def test_grubenv_is_grub_editenvs_empty_block():
    env = grub_host._grubenv()
    assert len(env) == 1024 and env.startswith(b"# GRUB Environment Block\n") and env.endswith(b"#")
