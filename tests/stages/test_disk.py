"""The bootstrap pipeline's images, read back with an independent read-only libguestfs launch
(one per image). Real mmdebstrap against deb.debian.org; cached across sessions."""

import re
import struct

import pytest

from linux_bootstrap_support import build, debconf_get, inspect, variant

from builder.linux import diskimage
from builder.stages import disk

pytestmark = pytest.mark.network


@pytest.fixture(scope="session")
def amd64():
    res = build("debian-12-amd64")
    return res, inspect(res.artifacts["drivers"].image)


@pytest.fixture(scope="session")
def i386():
    res = build("debian-12-i386")
    return res, inspect(res.artifacts["drivers"].image)


@pytest.fixture(params=["amd64", "i386"])
def image(request):
    return request.getfixturevalue(request.param)


def test_disk_reads_no_customize_keys():
    assert not any(k.startswith("customize") for k in disk.STAGE.reads)
    # the variant that applies file-only customizations to the tree reads them, and only it
    assert disk.CUSTOMIZING.reads == disk.STAGE.reads + ("customize",)
    assert disk.CUSTOMIZING.run is disk.run_customized and disk.CUSTOMIZING.name == "disk"


def test_the_recipes_customizations_are_in_the_image_with_no_customize_stage(image):
    """The shipped recipes only edit files in [customize]: their disk stage applied those to the
    tree on the host (hostname, time zone, locale, root locked), and there is no customize stage."""
    res, f = image
    assert [s.name for s in res.steps] == ["bootstrap", "disk", "drivers"]
    summary = res.artifacts["disk"].data["customize"]
    assert summary["hostname"] == f["hostname"] and f["hostname"] in ("debian12", "debian12-i386")
    assert f"127.0.1.1\t{f['hostname']}" in f["hosts"].splitlines()
    assert (f["timezone"], f["localtime"]) == ("UTC", "/usr/share/zoneinfo/UTC")
    assert f["default_locale"] == "LANG=C.UTF-8\n"
    assert f["root_shadow"].split(":")[1].startswith("!") and summary["root"] == "locked"
    assert not f["policy_rc_d"]                     # customize's own guard is gone again
    assert res.artifacts["disk"].data["timings"]["customize_s"] < 30


def test_inspection_finds_debian_12(image):
    _res, f = image
    assert f["roots"] == 1 and f["type"] == "linux" and f["distro"] == "debian" and f["major"] == 12


def test_amd64_is_64_bit(amd64):
    _res, f = amd64
    assert f["arch"] == "x86_64" and f["bash_arch"] == "x86_64"
    assert any(re.fullmatch(r"vmlinuz-.*-amd64", n) for n in f["boot"])


def test_i386_has_32_bit_binaries_and_686_pae_kernel(i386):
    _res, f = i386
    assert f["arch"] == "i386" and f["bash_arch"] == "i386"
    assert any(re.fullmatch(r"vmlinuz-.*-686-pae", n) for n in f["boot"])


def test_fstab_mounts_root_by_the_filesystems_uuid(image):
    res, f = image
    uuid = res.artifacts["disk"].data["root_uuid"]
    assert f["root_fs_uuid"] == uuid and f["root_fs_type"] == "ext4"
    assert re.search(rf"^UUID={uuid}\s+/\s+ext4\s", f["fstab"], re.M)
    assert "/dev/sd" not in f["fstab"] and "/dev/vd" not in f["fstab"]
    assert f["part_table"] == "msdos" and f["root_device"] == "/dev/sda1"


def test_uuids_are_derived_from_the_recipe_name(amd64, i386):
    assert amd64[0].artifacts["disk"].data["root_uuid"] != i386[0].artifacts["disk"].data["root_uuid"]
    from builder.linux.diskimage import ids_for
    assert amd64[1]["root_fs_uuid"] == str(ids_for("debian-12-amd64").root)


def test_grub_boots_root_by_uuid_with_serial_console(image):
    res, f = image
    uuid = res.artifacts["disk"].data["root_uuid"]
    linux = [ln.strip() for ln in f["grub_cfg"].splitlines() if ln.strip().startswith("linux")]
    assert linux
    for ln in linux:
        assert f"root=UUID={uuid}" in ln and "console=ttyS0,115200" in ln and "console=tty0" in ln
        assert "root=/dev/" not in ln
    assert "serial --speed=115200" in f["grub_cfg"] and "terminal_output" in f["grub_cfg"]
    assert "GRUB_DISABLE_OS_PROBER=true" in f["default_grub"]
    # GRUB finds its root by UUID; the BIOS hint names the root partition on the first disk
    search = [ln for ln in f["grub_cfg"].splitlines() if "search " in ln and "--fs-uuid" in ln]
    assert search and all(ln.rstrip().endswith(uuid) for ln in search), search
    hints = re.findall(r"--hint-bios=(\S+)", f["grub_cfg"])
    assert hints and all(h == "hd0,msdos1" for h in hints), hints


def test_initramfs_carries_the_virtio_modules(image):
    _res, f = image
    assert f["initramfs"]
    for version, listing in f["initramfs"].items():
        names = {re.sub(r"\.ko(\.\w+)?$", "", p.rsplit("/", 1)[-1]) for p in listing if ".ko" in p}
        for m in ("virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console"):
            assert m in names, f"{m} not in initrd.img-{version}"
    for m in ("virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console"):
        assert re.search(rf"^{m}$", f["initramfs_modules_conf"], re.M)


def test_first_boot_identity_is_clean(image):
    _res, f = image
    assert f["machine_id_size"] == 0
    assert f["ssh_host_keys"] == [] and f["ssh_keygen_unit"]
    assert set(f["apt_lists"]) <= {"partial", "lock"} and f["apt_debs"] == []


def test_network_by_networkd_dhcp_with_resolved(image):
    _res, f = image
    assert f["networkd_enabled"] and "DHCP=yes" in f["network_unit"] and "en*" in f["network_unit"]
    # one network stack on the boot path: the recipe's ifupdown is installed but not started
    assert not f["networking_enabled"] and not f["e2scrub_reap_enabled"]
    assert f["resolv_conf"] == "../run/systemd/resolve/stub-resolv.conf"


def test_grub_pc_install_device_is_answered_with_the_virtio_disk(image):
    """Read by the host's own debconf: a later grub-pc upgrade in the guest reinstalls GRUB on
    /dev/vda instead of stopping at the install-devices question."""
    res, f = image
    assert debconf_get(f["debconf_config"], "grub-pc/install_devices") == ("/dev/vda", True)
    assert res.artifacts["disk"].data["debconf"] == {"grub-pc/install_devices": "/dev/vda"}


@pytest.fixture(scope="session")
def uefi_gpt():
    res = build(variant("debian-12-amd64", "debian-12-amd64-uefi", firmware="uefi",
                        disk__partition_table="gpt"))
    return res, inspect(res.artifacts["drivers"].image)


def test_uefi_gpt_has_an_esp_by_uuid_and_a_removable_grub(uefi_gpt):
    res, f = uefi_gpt
    d = res.artifacts["disk"].data
    assert f["part_table"] == "gpt" and d["firmware"] == "uefi"
    assert f["filesystems"]["/dev/sda1"] == "vfat" and f["filesystems"]["/dev/sda2"] == "ext4"
    assert f["fs_uuids"]["/dev/sda1"] == d["esp_uuid"] and f["fs_uuids"]["/dev/sda2"] == d["root_uuid"]
    assert re.search(rf"^UUID={d['esp_uuid']}\s+/boot/efi\s+vfat\s", f["fstab"], re.M)
    assert "BOOTX64.EFI" in f["efi_boot"]
    assert d["grub"]["platform"] == "x86_64-efi" and {"normal.mod", "core.efi"} <= set(f["grub_modules"])
    assert all(f"root=UUID={d['root_uuid']}" in ln for ln in d["grub_linux"])


def test_grub_boot_blocks_point_at_the_core_image(image):
    """GRUB was put in from the host (no grub-install): boot.img's code in the MBR with the
    partition table and disk id sfdisk wrote, its kernel-sector pointer at the core image, and
    the core image's first blocklist entry covering the rest of it."""
    res, f = image
    d = res.artifacts["disk"].data
    head = f["disk_head"]
    grub = d["grub"]
    assert grub["platform"] == "i386-pc" and grub["core_sector"] == 1
    assert b"GRUB" in head[:0x1b8] and head[510:512] == b"\x55\xaa"
    assert struct.unpack_from("<Q", head, 0x5c)[0] == grub["core_sector"]
    assert head[0x66:0x68] == b"\x90\x90"
    # the partition table is sfdisk's: one bootable Linux partition at 1 MiB
    entry = head[0x1be:0x1ce]
    assert entry[0] == 0x80 and entry[4] == 0x83 and struct.unpack_from("<I", entry, 8)[0] == 2048
    assert struct.unpack_from("<I", head, 0x1b8)[0] == int(diskimage.ids_for(res.recipe.name).mbr_id, 16)
    core = head[512 * grub["core_sector"]:]
    start, count, seg = struct.unpack_from("<QHH", core, 512 - 12)
    assert (start, count, seg) == (grub["core_sector"] + 1, -(-grub["core_bytes"] // 512) - 1, 0x820)
    # what the core image loads at boot; and core.img, whose presence is what makes Debian's
    # grub-pc postinst re-run grub-install on an upgrade; nothing of the build left in the tree
    assert {"normal.mod", "linux.mod", "ext2.mod", "serial.mod", "core.img", "boot.img",
            "load.cfg"} <= set(f["grub_modules"])
    assert not f["grub_work_left"]


@pytest.mark.boot
def test_uefi_image_boots_under_ovmf(uefi_gpt, tmp_path):
    """The UEFI image (GPT, ESP, GRUB's loader put into the FAT from the host) boots under OVMF
    with fresh NVRAM: nothing but \\EFI\\BOOT\\BOOTX64.EFI can be found there."""
    from builder import qemu_img
    from builder.runner.verify import VerifyTarget, verify_image

    res, _f = uefi_gpt
    # verify refuses an image naming a backing file (a published image never does): flatten it
    flat = tmp_path / "uefi.qcow2"
    qemu_img.convert(res.artifacts["drivers"].image, flat, "qcow2", what="uefi test flatten")
    r = verify_image(VerifyTarget(image=flat, name="debian-12-amd64-uefi", arch="x86_64", firmware="uefi"),
                     tmp_path / "verify")
    assert r.ok, r.message
    assert r.marker["root"] == "/dev/vda2" and r.marker.get("failed") == "none"
