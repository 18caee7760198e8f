import os

import pytest

from builder.errors import BuildError
from builder.linux import rootfs


def _tree(tmp_path):
    root = tmp_path / "root"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/default").mkdir()
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/lib/systemd").mkdir(parents=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    (root / "var/lib/dbus").mkdir(parents=True)
    (root / "boot").mkdir()
    for k in ("rsa", "ed25519"):
        (root / f"etc/ssh/ssh_host_{k}_key").write_text("secret")
        (root / f"etc/ssh/ssh_host_{k}_key.pub").write_text("pub")
    (root / "etc/ssh/sshd_config").write_text("# config\n")
    (root / "usr/sbin/sshd").write_text("")
    (root / "usr/lib/systemd/systemd-resolved").write_text("")
    (root / "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease").write_text("x")
    (root / "var/cache/apt/pkgcache.bin").write_text("x")
    (root / "var/lib/dbus/machine-id").write_text("0123\n")
    (root / "etc/machine-id").write_text("0123456789abcdef\n")
    (root / "etc/default/grub").write_text('GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
                                           'GRUB_CMDLINE_LINUX=""\n#GRUB_TERMINAL=console\n')
    (root / "etc/.resolv.conf.systemd-resolved.bak").write_text("nameserver 1.1.1.1\n")
    return root


def test_prepare_writes_boot_policy_into_the_tree(tmp_path):
    root = _tree(tmp_path)
    entries = [rootfs.FstabEntry("UUID=abc", "/", "ext4", "errors=remount-ro", 1)]
    facts = rootfs.prepare(root, entries, {"GRUB_TIMEOUT": "1", "GRUB_TERMINAL": "console serial"})
    assert "UUID=abc / ext4 errors=remount-ro 0 1" in (root / "etc/fstab").read_text()
    assert (root / "etc/hostname").read_text() == "debian\n"
    assert "127.0.1.1\tdebian" in (root / "etc/hosts").read_text()
    assert (root / "etc/machine-id").read_text() == ""
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert not list((root / "etc/ssh").glob("ssh_host_*")) and (root / "etc/ssh/sshd_config").exists()
    assert facts["ssh_host_keys_removed"] == 4
    unit = root / "etc/systemd/system" / rootfs.SSH_KEYGEN_UNIT_NAME
    assert "ssh-keygen -A" in unit.read_text() and "Before=ssh.service" in unit.read_text()
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants" / rootfs.SSH_KEYGEN_UNIT_NAME)
    assert sorted(p.name for p in (root / "var/lib/apt/lists").iterdir()) == ["partial"]
    assert not (root / "var/cache/apt/pkgcache.bin").exists()
    assert (root / "var/cache/apt/archives/partial").is_dir()
    assert os.readlink(root / "etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
    assert not (root / "etc/.resolv.conf.systemd-resolved.bak").exists()
    grub = (root / "etc/default/grub").read_text()
    assert "GRUB_TIMEOUT=1\n" in grub and 'GRUB_TERMINAL="console serial"' in grub
    assert "GRUB_TIMEOUT=5" not in grub and "#GRUB_TERMINAL" not in grub


def test_writes_never_follow_symlinks_out_of_the_tree(tmp_path):
    root = _tree(tmp_path)
    outside = tmp_path / "host-file"
    outside.write_text("host")
    # an absolute symlink in the tree points at the host when followed from outside
    (root / "etc/hostname").symlink_to(outside)
    rootfs.write(root, "etc/hostname", "guest\n")
    assert outside.read_text() == "host" and (root / "etc/hostname").read_text() == "guest\n"
    (root / "etc/evil").symlink_to(tmp_path)
    with pytest.raises(BuildError, match="symlink"):
        rootfs.write(root, "etc/evil/x", "y")
    assert not (tmp_path / "x").exists()
    with pytest.raises(BuildError):
        rootfs.write(root, "../escape", "y")


def test_set_shell_vars_replaces_and_appends():
    text = 'A=1\n# B=2\nC="x y"\n'
    out = rootfs.set_shell_vars(text, {"A": "3", "B": "two words", "D": "console=ttyS0,115200"})
    assert out == 'A=3\nB="two words"\nC="x y"\nD=console=ttyS0,115200\n'


def test_kernel_versions_need_an_initrd(tmp_path):
    root = _tree(tmp_path)
    (root / "boot/vmlinuz-6.1.0-1-amd64").write_text("")
    (root / "boot/initrd.img-6.1.0-1-amd64").write_text("")
    (root / "boot/vmlinuz-6.1.0-0-amd64").write_text("")
    assert rootfs.kernel_versions(root) == ["6.1.0-1-amd64"]
