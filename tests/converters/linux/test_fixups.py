"""The Linux planners on texts (no launch): device names to UUIDs wherever root= appears, Xen
consoles to ttyS0, foreign tools, MAC-bound rules and the interface move, merged per file."""

from __future__ import annotations

import pytest

from builder.errors import BuildError
from converters.linux import console, devices, fixups, network, tools

UUIDS = {"/dev/sda1": "1111-root", "/dev/sda2": "2222-swap", "/dev/sdb1": "3333-data"}


def test_old_names_map_to_the_appliance_disk_and_partition():
    assert devices.appliance_name("/dev/xvda1") == "/dev/sda1"
    assert devices.appliance_name("/dev/hdb1") == "/dev/sdb1"
    assert devices.appliance_name("/dev/xvdaa3") == "/dev/sdaa3"
    assert devices.appliance_name("/dev/nvme1n1p2") == "/dev/sdb2"
    assert devices.appliance_name("/dev/mapper/vg-root") is None


def test_fstab_by_uuid_keeps_labels_comments_and_unknown_devices():
    text = ("# /dev/xvda1 was the root\n/dev/xvda1 / ext4 errors=remount-ro 0 1\n"
            "/dev/xvda2 none swap sw 0 0\nLABEL=x /x ext4 defaults 0 2\n/dev/xvdc1 /c ext4 defaults 0 2\n")
    new, changed = devices.rewrite_fstab(text, UUIDS)
    assert new.splitlines()[0] == "# /dev/xvda1 was the root"
    assert "UUID=1111-root / ext4" in new and "UUID=2222-swap none swap" in new
    assert "LABEL=x /x" in new and "/dev/xvdc1 /c" in new     # no such disk: left, not guessed
    assert changed == ["/dev/xvda1 -> UUID=1111-root", "/dev/xvda2 -> UUID=2222-swap"]


def test_root_and_resume_rewritten_in_grub_defaults_and_grub_uuid_reenabled():
    files = {"/etc/default/grub": 'GRUB_CMDLINE_LINUX="console=hvc0 root=/dev/xvda1 resume=/dev/xvda2"\n'
                                  "GRUB_DISABLE_LINUX_UUID=true\n",
             "/etc/kernel/cmdline": "root=/dev/sda1 ro\n", "/boot/grub/device.map": "(hd0) /dev/xvda\n"}
    edits = {e.path: e for e in devices.plan(files, UUIDS)}
    g = edits["/etc/default/grub"].new
    assert "root=UUID=1111-root" in g and "resume=UUID=2222-swap" in g and "GRUB_DISABLE_LINUX_UUID" not in g
    assert "GRUB_DISABLE_LINUX_UUID removed" in edits["/etc/default/grub"].why
    assert edits["/etc/kernel/cmdline"].new == "root=UUID=1111-root ro\n"
    assert edits["/boot/grub/device.map"].new == "(hd0) /dev/vda\n"


def test_consoles_and_gettys_move_to_ttyS0():
    files = {"/etc/default/grub": 'GRUB_CMDLINE_LINUX="console=hvc0 quiet"\n',
             "/etc/inittab": "co:2345:respawn:/sbin/getty hvc0 9600 vt100\n", "/etc/securetty": "hvc0\n"}
    links = {f"{console.WANTS}/serial-getty@hvc0.service": console.GETTY_TEMPLATE}
    edits = {e.path: e for e in console.plan(files, links)}
    assert 'console=ttyS0,115200 quiet' in edits["/etc/default/grub"].new
    assert "getty ttyS0" in edits["/etc/inittab"].new
    assert edits["/etc/securetty"].new.endswith("ttyS0\n")
    assert edits[f"{console.WANTS}/serial-getty@hvc0.service"].action == "remove"
    assert edits[f"{console.WANTS}/serial-getty@ttyS0.service"].link == console.GETTY_TEMPLATE


def test_foreign_tools_removed_with_the_package_manager_and_hostile_names_dropped():
    runs = tools.plan(tools.safe_names(["bash", "open-vm-tools", "hyperv-daemons", "virtualbox-guest-x11",
                                        "xe-guest-utilities", "evil;rm -rf /"]), "deb")
    assert runs[0].argv[-4:] == ("hyperv-daemons", "open-vm-tools", "virtualbox-guest-x11", "xe-guest-utilities")
    assert "dpkg" in runs[0].argv and "--purge" in runs[0].argv and "Hyper-V" in runs[0].why
    assert tools.plan(["bash"], "deb") == []


def test_parallels_tools_are_removed_by_their_own_uninstaller_before_packages():
    p = fixups.plan(_facts(parallels_tools=True, foreign_tools=["open-vm-tools"]))
    assert [r.argv[:2] for r in p.removals] == [(tools.PARALLELS_UNINSTALL, "-r"), ("env", "DEBIAN_FRONTEND=noninteractive")]
    assert "Parallels Tools" in p.removals[0].why and any("install -r" in line for line in p.steps())
    assert fixups.plan(_facts()).removals == []


def test_network_single_interface_is_moved_to_the_virtio_nic_by_mac():
    files = {"/etc/network/interfaces": "auto lo\niface lo inet loopback\nauto eth0\niface eth0 inet static\n"
                                        "  address 10.0.0.5/24\n",
             network.RULES[0]: '# gen\nSUBSYSTEM=="net", ATTR{address}=="00:16:3e:aa:bb:cc", NAME="eth0"\n'}
    edits, decision = network.plan(files, ["52:54:00:12:34:56"])
    by = {e.path: e for e in edits}
    assert by[network.RULES[0]].new == "# gen\n"
    assert "MACAddress=52:54:00:12:34:56" in by[network.LINK].new and "Name=eth0" in by[network.LINK].new
    assert decision["action"] == "moved" and decision["method"] == "static"
    _, two = network.plan({"/etc/network/interfaces": "iface eth0 inet dhcp\niface eth1 inet dhcp\n"}, [])
    assert two["action"] == "unchanged" and "2 interfaces" in two["reason"]
    _, odd = network.plan({"/etc/network/interfaces": "iface eth0;x inet dhcp\n"}, [])
    assert odd["action"] == "unchanged"


def _facts(**over):
    f = {"distro": "debian", "package_format": "deb", "root": "/dev/sda1", "uuids": UUIDS,
         "kernels": [{"version": "6.1", "vmlinuz": True, "initrd": True, "virtio": ["virtio_blk"],
                      "virtio_capable": True, "xen_pv_only": False}],
         "bootloader": "grub2", "firmware": "bios", "has_update_grub": True, "has_grub_pc": True,
         "foreign_tools": [], "getty_links": {},
         "files": {"/etc/default/grub": 'GRUB_CMDLINE_LINUX="console=hvc0 root=/dev/xvda1"\n'
                                        "GRUB_DISABLE_LINUX_UUID=true\n",
                   "/etc/initramfs-tools/modules": "xen-blkfront\n"}}
    f.update(over)
    return f


def test_plan_merges_edits_per_file_and_lists_every_reason():
    hvc = f"{console.WANTS}/serial-getty@hvc0.service"
    p = fixups.plan(_facts(getty_links={hvc: console.GETTY_TEMPLATE}))
    by = {e.path: e for e in p.edits}
    assert by[hvc].action == "remove" and by[f"{console.WANTS}/serial-getty@ttyS0.service"].action == "symlink"
    g = by["/etc/default/grub"]
    assert g.new == 'GRUB_CMDLINE_LINUX="console=ttyS0,115200 root=UUID=1111-root"\n'
    assert "UUID" in g.why and "console=hvc0" in g.why and g.old.startswith("GRUB_CMDLINE")
    assert by["/etc/initramfs-tools/modules"].new.startswith("xen-blkfront\n")
    assert "virtio_blk" in by["/etc/initramfs-tools/modules"].new
    assert p.grub["install"] and p.grub["regenerate"]


def test_the_conversions_initramfs_is_modules_list_for_the_filesystems_it_mounts():
    from converters.linux import kernel
    p = fixups.plan(_facts(boot_fstypes=["ext4"]))
    assert p.initramfs["list_build"] == ["ext4"] and "MODULES=list for this build" in p.initramfs["why"]
    assert fixups.plan(_facts(boot_fstypes=["ext3", "xfs"])).initramfs["list_build"] == ["ext4", "xfs"]
    # a filesystem this table does not know, or none found: the guest keeps its own setting
    for fstypes in (["ext4", "zfs"], [], ["unknown"]):
        p = fixups.plan(_facts(boot_fstypes=fstypes))
        assert p.initramfs["list_build"] is None and "MODULES=list" not in p.initramfs["why"]
    assert kernel.root_modules(["ext2", "ext4"]) == ("ext4",)


XEN_ONLY = [{"version": "2.6.18-xen", "vmlinuz": True, "initrd": True, "virtio": [],
             "virtio_capable": False, "xen_pv_only": True}]


def test_xen_only_kernels_get_the_release_kernel_on_debian_and_are_refused_elsewhere():
    p = fixups.plan(_facts(kernels=XEN_ONLY, version="12.5", arch="i386"))
    assert p.kernel_install["package"] == "linux-image-686-pae" and "Xen-PV-only" in p.kernel_install["why"]
    assert p.steps()[0].startswith("kernel: install linux-image-686-pae")
    assert fixups.plan(_facts(kernels=[], version="13.1", arch="x86_64")).kernel_install["package"] == "linux-image-amd64"
    # Debian 13 has no i386 kernel; Debian 9 is not a release ironforge builds; Ubuntu has its own archive
    for over in ({"version": "13.1", "arch": "i386"}, {"version": "9.13", "arch": "x86_64"},
                 {"version": "22.4", "arch": "x86_64", "distro": "ubuntu"}):
        with pytest.raises(BuildError, match="only Xen-PV-only kernels"):
            fixups.plan(_facts(kernels=XEN_ONLY, **over))
    with pytest.raises(BuildError, match="not supported"):
        fixups.plan(_facts(distro="gentoo"))


def test_debian_default_kernel_pinned_past_a_newer_xen_only_one():
    xen = {"version": "6.9.0-xen", "vmlinuz": True, "initrd": True, "virtio": [], "virtio_capable": False,
           "xen_pv_only": True}
    ok = [{"version": v, "vmlinuz": True, "initrd": True, "virtio": ["virtio_blk"], "virtio_capable": True,
           "xen_pv_only": False} for v in ("6.1.0-9-amd64", "6.1.0-10-amd64")]
    p = fixups.plan(_facts(kernels=[xen, *ok]))
    grub = {e.path: e for e in p.edits}["/etc/default/grub"]
    want = "gnulinux-advanced-1111-root>gnulinux-6.1.0-10-amd64-advanced-1111-root"
    assert f'GRUB_DEFAULT="{want}"' in grub.new and "6.9.0-xen" in grub.why
    assert p.default_kernel == {"kernel": "6.1.0-10-amd64", "entry": want}
    # every kernel boots from virtio: the guest's own choice stays
    assert fixups.plan(_facts(kernels=ok)).default_kernel == {}


def test_generated_grub_cfg_check_catches_the_appliance_device_leak():
    bad = "menuentry 'Debian' {\n\tlinux /boot/vmlinuz-6.1 root=/dev/sda1 ro console=ttyS0,115200\n}\n"
    assert fixups.check_grub_cfg(bad, "1111-root")
    good = bad.replace("root=/dev/sda1", "root=UUID=1111-root")
    assert fixups.check_grub_cfg(good, "1111-root") == []
    # the kernel takes the last root=: a stale device after the UUID still fails
    assert fixups.check_grub_cfg(good.replace(" ro ", " ro root=/dev/xvda1 "), "1111-root")
    lvm = bad.replace("root=/dev/sda1", "root=/dev/mapper/rhel-root")
    assert fixups.check_grub_cfg(lvm, "1111-root", lvm=True) == []
    assert fixups.check_grub_cfg(lvm, "1111-root")


def test_bls_entries_and_grub_dropins_are_command_lines_too():
    files = {"/boot/loader/entries/abc-5.14.conf": "options root=/dev/xvda1 console=hvc0 ro\n",
             "/etc/default/grub.d/50-cloud.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="console=xvc0"\n'}
    by = {e.path: e for e in fixups.plan(_facts(files=files, bootloader="none")).edits}
    assert by["/boot/loader/entries/abc-5.14.conf"].new == "options root=UUID=1111-root console=ttyS0,115200 ro\n"
    assert "console=ttyS0,115200" in by["/etc/default/grub.d/50-cloud.cfg"].new


def test_uefi_guest_without_the_fallback_loader_gets_a_removable_grub():
    """Its NVRAM boot entries stay with the old hypervisor: the new VM's firmware finds only
    \\EFI\\BOOT\\BOOTX64.EFI, so one is made when the ESP lacks it, never when it has one."""
    esp = {"fallback": "BOOTX64.EFI", "fallback_present": False, "vendors": ["debian"], "grub_efi_modules": True}
    p = fixups.plan(_facts(bootloader="grub2-efi", firmware="uefi", esp_files=esp))
    assert p.grub["install"] is True and p.grub["target"] == "x86_64-efi"
    assert "BOOTX64.EFI" in p.grub["why"] and "debian" in p.grub["why"]
    p = fixups.plan(_facts(bootloader="grub2-efi", firmware="uefi", esp_files=dict(esp, fallback_present=True)))
    assert p.grub["install"] is False and p.notes == []
    p = fixups.plan(_facts(bootloader="grub2-efi", firmware="uefi", esp_files=dict(esp, grub_efi_modules=False)))
    assert p.grub["install"] is False and any("needs a boot entry for debian" in n for n in p.notes)
    # BIOS guests keep the disk install (i386-pc)
    p = fixups.plan(_facts())
    assert p.grub["install"] is True and p.grub["target"] == "i386-pc"
