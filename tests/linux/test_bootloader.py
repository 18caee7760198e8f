import pytest

from builder.errors import BuildError
from builder.linux import bootloader

U = "0b4e2a0c-5d5e-5a43-9a2e-8f1ad3f2b9c1"


def test_install_commands_per_firmware():
    bios = bootloader.install_commands("bios", "/dev/sdb")
    assert bios[0][:2] == ["grub-install", "--target=i386-pc"] and bios[0][-1] == "/dev/sdb"
    efi = bootloader.install_commands("uefi", "")
    assert "--target=x86_64-efi" in efi[0] and "--removable" in efi[0] and "--efi-directory=/boot/efi" in efi[0]
    assert bios[-1] == efi[-1] == ["update-grub"]


def test_grub_cfg_check_wants_uuid_root_and_serial_console():
    good = (f"\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=UUID={U} ro console=tty0 console=ttyS0,115200\n")
    assert bootloader.check_grub_cfg(good, U) == []
    bad = "\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=/dev/sda1 ro quiet\n"
    problems = bootloader.check_grub_cfg(bad, U)
    assert any("root=UUID" in p for p in problems) and any("serial" in p for p in problems)
    assert bootloader.check_grub_cfg("menuentry {}\n", U) == ["no 'linux' line in grub.cfg"]


def test_defaults_carry_the_serial_console_and_no_os_prober():
    d = bootloader.GRUB_DEFAULTS
    assert "console=ttyS0,115200" in d["GRUB_CMDLINE_LINUX"] and "console=tty0" in d["GRUB_CMDLINE_LINUX"]
    assert d["GRUB_TERMINAL"] == "console serial" and d["GRUB_DISABLE_OS_PROBER"] == "true"


class _Handle:
    """Stands in for a libguestfs handle where a real appliance cannot be made to misbehave on
    demand (which disk the appliance kernel calls sda is up to its probe order); the real
    GRUB installs run in tests/stages/test_disk.py."""

    def __init__(self, probe="/dev/sdb\n", fail=()):
        self.probe, self.fail, self.calls = probe, fail, []

    def command(self, cmd):
        from builder.errors import GuestfsError
        # every guest command comes wrapped in guest_command's time limit: look at what it runs
        assert cmd[:2] == ["/bin/sh", "-c"] and cmd[3] == "ironforge-limit" and int(cmd[4]) > 0, cmd
        cmd = cmd[5:]
        if cmd[:2] == ["/bin/sh", "-c"]:
            return self.sh(cmd[2])
        self.calls.append(cmd)
        if cmd[0] == "grub-probe":
            return self.probe
        if cmd[0] in self.fail:
            raise GuestfsError(f"libguestfs command: {cmd[0]} failed")
        return ""

    def sh(self, script):
        return f"output of {script.split(' 2>&1')[0]}"

    def cat(self, path):
        return f"\tlinux /vmlinuz root=UUID={U} ro console=tty0 console=ttyS0,115200\n"


def test_grub_goes_to_the_disk_grub_probe_names_not_a_fixed_sda():
    g = _Handle(probe="/dev/sdb\n")
    bootloader.install(g, "bios", U)
    assert g.calls.index(["grub-install", "--target=i386-pc", "--no-floppy", "/dev/sdb"]) \
        < g.calls.index(["update-grub"])
    with pytest.raises(BuildError, match="not a whole disk"):
        bootloader.install(_Handle(probe="/dev/sdb1\n"), "bios", U)


def test_a_failed_grub_install_quotes_what_grub_saw():
    with pytest.raises(BuildError) as e:
        bootloader.install(_Handle(fail=("grub-install",)), "bios", U)
    assert "grub-install failed" in e.value.message
    assert "what GRUB saw:\n$ grub-probe --target=drive /boot\noutput of grub-probe" in e.value.message
    with pytest.raises(BuildError) as e:
        bootloader.install(_Handle(fail=("update-grub",)), "bios", U)
    assert "what GRUB saw" not in e.value.message
