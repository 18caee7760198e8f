"""Debconf answers as a file edit of config.dat, read back by the host's real debconf."""

from pathlib import Path

import pytest

from linux_bootstrap_support import debconf_get

from builder.errors import BuildError
from builder.linux import debconf

# stanzas as mmdebstrap leaves them: grub-pc registered its questions, nothing answered
CONFIG = """\
Name: grub-pc/install_devices
Template: grub-pc/install_devices
Owners: grub-pc

Name: grub-pc/install_devices_empty
Template: grub-pc/install_devices_empty
Owners: grub-pc

Name: ca-certificates/trust_new_crts
Template: ca-certificates/trust_new_crts
Value: yes
Owners: ca-certificates
Flags: seen
Variables:
 x = y

"""


def test_answer_is_set_and_seen_and_the_rest_kept():
    new, missing = debconf.set_answers(CONFIG, debconf.grub_pc_answers())
    assert missing == []
    assert debconf_get(new, "grub-pc/install_devices") == ("/dev/vda", True)
    assert debconf_get(new, "grub-pc/install_devices_empty") == ("", False)
    assert debconf_get(new, "ca-certificates/trust_new_crts") == ("yes", True)
    assert " x = y" in new


def test_existing_value_and_flags_are_replaced_not_duplicated():
    once, _ = debconf.set_answers(CONFIG, {"grub-pc/install_devices": "/dev/sdz"})
    twice, _ = debconf.set_answers(once, {"grub-pc/install_devices": "/dev/vda"})
    stanza = twice.split("\n\n")[0]
    assert stanza.count("Value:") == 1 and stanza.count("seen") == 1
    assert debconf_get(twice, "grub-pc/install_devices") == ("/dev/vda", True)


def test_question_of_a_package_not_installed_is_reported_not_invented():
    new, missing = debconf.set_answers(CONFIG, {"grub-efi/whatever": "x"})
    assert missing == ["grub-efi/whatever"] and new == CONFIG


def test_line_break_in_an_answer_is_refused():
    with pytest.raises(BuildError):
        debconf.set_answers(CONFIG, {"grub-pc/install_devices": "/dev/vda\nName: evil"})


def test_preseed_edits_the_tree_in_place_keeping_the_mode(tmp_path: Path):
    p = tmp_path / debconf.CONFIG_DAT
    p.parent.mkdir(parents=True)
    p.write_text(CONFIG)
    p.chmod(0o600)
    assert debconf.preseed(tmp_path, debconf.grub_pc_answers()) == {"grub-pc/install_devices": "/dev/vda"}
    assert p.stat().st_mode & 0o777 == 0o600
    assert debconf_get(p.read_text(), "grub-pc/install_devices") == ("/dev/vda", True)
    (tmp_path / "bare").mkdir()
    assert debconf.preseed(tmp_path / "bare", debconf.grub_pc_answers()) == {}


# --- the proof inside a real guest (make test-slow: two TCG boots and a kernel install) -------

UPGRADE_DIR = "/var/cache/ironforge-upgrade"
UPGRADE_UNIT = "ironforge-upgrade.service"
# Runs once at boot, output on the serial console: dpkg with no terminal and the noninteractive
# frontend, exactly what an unattended upgrade does; then the guest powers off.
UPGRADE_SCRIPT = f"""#!/bin/sh
exec >/dev/ttyS0 2>&1 </dev/null
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "IRONFORGE-UPGRADE start"
dpkg -i {UPGRADE_DIR}/*.deb
echo "IRONFORGE-UPGRADE rc=$?"
rm -rf {UPGRADE_DIR} /etc/systemd/system/multi-user.target.wants/{UPGRADE_UNIT}
sync
systemctl poweroff --no-block
"""
UPGRADE_UNIT_TEXT = """[Unit]
Description=test: upgrade grub-pc and install a kernel from local .debs
# agetty's vhangup on ttyS0 would cut the output this writes there
Before=serial-getty@ttyS0.service getty.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/ironforge-upgrade

[Install]
WantedBy=multi-user.target
"""


def _download_debs(dest: Path) -> tuple[list[Path], str]:
    """grub-pc and its GRUB packages, and the kernel linux-image-amd64 points at now, fetched
    by the host's apt (so checked against the signed lists); the kernel's release name."""
    import re
    import subprocess

    dep = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True,
                         text=True, check=True).stdout
    kernel = re.search(r"Depends: (linux-image-(\S+-amd64))\n", dep)
    assert kernel, dep
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "grub-pc",
                    "grub-pc-bin", "grub2-common", "grub-common", kernel.group(1)],
                   cwd=dest, check=True, capture_output=True, timeout=900)
    return sorted(dest.glob("*.deb")), kernel.group(2)


@pytest.mark.slow
@pytest.mark.boot
@pytest.mark.network
# a kernel unpacked and its initramfs made under TCG: ~5 min on an idle host, 30+ on a loaded one
@pytest.mark.timeout(5400)
def test_grub_pc_upgrade_and_a_new_kernel_inside_the_guest_then_it_boots(tmp_path: Path):
    """Boot 1: dpkg installs grub-pc (same version: the upgrade path of its postinst, which
    reinstalls GRUB on the answered devices) and the current kernel, unattended, then powers
    off. Boot 2: the normal verification boots the changed disk, on the new kernel."""
    from linux_bootstrap_support import build

    from builder import qemu_img
    from builder.host.accel import choose
    from builder.host.guestfs_session import Drive, session
    from builder.runner.machine import Disk, MachineSpec, QemuMachine
    from builder.runner.verify import VerifyTarget, verify_image

    accel = choose()
    base = Path(build("debian-12-amd64").artifacts["drivers"].image)
    debs, kernel_release = _download_debs(tmp_path / "debs")
    disk = qemu_img.overlay(base.resolve(), tmp_path / "upgrade.qcow2", what="upgrade test overlay")
    with session([Drive(disk, "qcow2", readonly=False)], accel, what="upgrade test: stage .debs") as g:
        root = g.inspect_os()[0]
        for mp, dev in sorted(g.inspect_get_mountpoints(root).items(), key=lambda x: len(x[0])):
            g.mount(dev, mp)
        g.mkdir_p(UPGRADE_DIR)
        for deb in debs:
            g.upload(str(deb), f"{UPGRADE_DIR}/{deb.name}")
        g.write("/usr/local/sbin/ironforge-upgrade", UPGRADE_SCRIPT.encode())
        g.chmod(0o755, "/usr/local/sbin/ironforge-upgrade")
        g.write(f"/etc/systemd/system/{UPGRADE_UNIT}", UPGRADE_UNIT_TEXT.encode())
        g.ln_sf(f"/etc/systemd/system/{UPGRADE_UNIT}",
                f"/etc/systemd/system/multi-user.target.wants/{UPGRADE_UNIT}")
        g.umount_all()

    serial = tmp_path / "upgrade-serial.log"
    spec = MachineSpec(arch="x86_64", accel=accel, memory_mb=1024, cpus=2, firmware="bios",
                       disks=(Disk(disk, "qcow2", "virtio"),), serial_log=serial,
                       name="ironforge-test-upgrade")
    with QemuMachine(spec) as m:
        m.start()
        m.wait(4800)
    log = serial.read_text(errors="replace")
    # all of it: dpkg's output and systemd's job spinner run to far more than one screen
    upgrade = log[log.find("IRONFORGE-UPGRADE start"):]
    assert "IRONFORGE-UPGRADE rc=0" in upgrade, upgrade[-6000:]
    assert "grub-install success for /dev/vda" in upgrade, upgrade[-6000:]
    assert "You must correct your GRUB install devices" not in log

    # verify refuses an image naming a backing file (a published image never does): flatten it
    flat = tmp_path / "upgraded.qcow2"
    qemu_img.convert(disk, flat, "qcow2", what="upgrade test flatten")
    r = verify_image(VerifyTarget(image=flat, name="upgraded", arch="x86_64", firmware="bios",
                                  timeout=900), tmp_path / "verify", accel=accel)
    assert r.ok, r.message
    assert r.marker["kernel"] == kernel_release and r.marker["root"] == "/dev/vda1"
