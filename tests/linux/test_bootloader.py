from builder.linux import bootloader

U = "0b4e2a0c-5d5e-5a43-9a2e-8f1ad3f2b9c1"


def test_install_commands_per_firmware():
    bios = bootloader.install_commands("bios")
    assert bios[0][:2] == ["grub-install", "--target=i386-pc"] and bios[0][-1] == "/dev/sda"
    efi = bootloader.install_commands("uefi")
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


class _FlakyHandle:
    """Stands in for a libguestfs handle: the grub-install flake cannot be produced on demand."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = []

    def command(self, cmd):
        from builder.errors import GuestfsError
        self.calls.append(cmd[0])
        if cmd[0] in self.failures and self.failures[cmd[0]] > 0:
            self.failures[cmd[0]] -= 1
            raise GuestfsError("libguestfs command: embedding is not possible")
        return ""

    def sh(self, script):
        self.calls.append("sh")
        return f"output of {script.split(' 2>&1')[0]}"


def test_grub_install_alone_is_retried_once_then_reports_what_grub_saw():
    import logging
    import pytest
    from builder.errors import GuestfsError
    g = _FlakyHandle({"grub-install": 1})
    bootloader._with_retry(g, ["grub-install", "/dev/sda"], logging.getLogger("t"))
    assert [c for c in g.calls if c != "sh"] == ["grub-install", "grub-install"]
    g = _FlakyHandle({"grub-install": 5})
    with pytest.raises(bootloader.GrubInstallError) as e:
        bootloader._with_retry(g, ["grub-install", "/dev/sda"], logging.getLogger("t"))
    assert [c for c in g.calls if c != "sh"] == ["grub-install", "grub-install"]
    assert "$ grub-probe --target=drive /boot/grub\noutput of grub-probe --target=drive" in e.value.diagnostics
    assert "cat /proc/partitions" in e.value.diagnostics
    g = _FlakyHandle({"update-grub": 1})
    with pytest.raises(GuestfsError):
        bootloader._with_retry(g, ["update-grub"], logging.getLogger("t"))
    assert g.calls == ["update-grub"]
