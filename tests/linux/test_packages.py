import pytest

from builder.errors import BuildError
from builder.linux.packages import Target, boot_packages, package_set, suite_for


def test_amd64_bios_gets_64_bit_kernel_and_grub_pc():
    pkgs = boot_packages(Target("12", "x86_64", "bios"))
    assert pkgs[0] == "linux-image-amd64"
    assert "grub-pc" in pkgs and "grub-efi-amd64" not in pkgs
    for p in ("systemd-sysv", "udev", "initramfs-tools", "e2fsprogs", "systemd-resolved"):
        assert p in pkgs


def test_i386_gets_686_pae_kernel():
    pkgs = boot_packages(Target("12", "i686", "bios"))
    assert pkgs[0] == "linux-image-686-pae" and "grub-pc" in pkgs


def test_uefi_gets_grub_efi_and_fat_tools():
    pkgs = boot_packages(Target("13", "x86_64", "uefi"))
    assert "grub-efi-amd64" in pkgs and "dosfstools" in pkgs and "grub-pc" not in pkgs


def test_release_words():
    assert suite_for("12") == "bookworm" and suite_for("13") == "trixie"
    assert Target("13", "x86_64", "bios").debian_arch == "amd64"
    assert Target("12", "i686", "bios").debian_arch == "i386"
    with pytest.raises(BuildError, match="not supported"):
        suite_for("11")


def test_debian_13_i386_is_refused_with_a_reason():
    with pytest.raises(BuildError, match="no i386 kernel") as e:
        boot_packages(Target("13", "i686", "bios"))
    assert "amd64" in e.value.hint


def test_32_bit_uefi_is_refused():
    with pytest.raises(BuildError, match="64-bit only"):
        boot_packages(Target("12", "i686", "uefi"))


def test_recipe_packages_follow_boot_packages_once_in_order():
    pkgs = package_set(Target("12", "x86_64", "bios"), ["sudo", "udev", " less ", "sudo"])
    assert pkgs[-2:] == ["sudo", "less"]
    assert pkgs.count("udev") == 1 and len(pkgs) == len(set(pkgs))
