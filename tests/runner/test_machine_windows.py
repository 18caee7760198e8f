"""QEMU command lines for Windows guests: every firmware / Secure Boot / TPM / bus combination
(no boot), and a real swtpm offered to a real QEMU (QMP query-tpm)."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.host.accel import Accel
from builder.runner.machine import (HYPERV_FLAGS, MachineSpec, QemuMachine, build_command,
                                    prepare_efi_vars)
from builder.windows.machine import WindowsMachine, spec as win_spec

TCG = Accel("tcg", "test")
KVM = Accel("kvm", "test")
SOCK = Path("/run/ifq/swtpm.sock")


def _pairs(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag]


# firmware x secure boot x tpm x bus x arch, minus what cannot exist (32-bit UEFI here, SB on BIOS)
COMBOS = [c for c in itertools.product(("bios", "uefi"), (False, True), (False, True),
                                       ("virtio-blk", "virtio-scsi"), ("x86_64", "i686"))
          if not (c[0] == "bios" and c[1]) and not (c[0] == "uefi" and c[4] == "i686")]


@pytest.mark.parametrize("firmware,secure_boot,tpm,bus,arch", COMBOS)
def test_windows_combination(firmware, secure_boot, tpm, bus, arch):
    m = WindowsMachine(arch=arch, firmware=firmware, disk_bus=bus, secure_boot=secure_boot, tpm=tpm)
    s = win_spec(m, TCG, system_disk=Path("/w/system.qcow2"),
                 cdroms=(Path("/w/win.iso"), Path("/w/answer.iso")),
                 serial_log=Path("/w/com1.log"), efi_vars=Path("/w/vars.fd") if firmware == "uefi" else None)
    cmd = build_command(s, Path("/run/q.sock"), tpm_socket=SOCK if tpm else None)
    machine = _pairs(cmd, "-machine")
    assert machine == [("q35" if firmware == "uefi" else "pc") + (",smm=on" if secure_boot else "")]
    # firmware: OVMF code read-only + the private vars copy; Secure Boot = the .ms pair with SMM-only flash
    pflash = [d for d in _pairs(cmd, "-drive") if d.startswith("if=pflash")]
    if firmware == "uefi":
        assert "readonly=on" in pflash[0]
        assert ("OVMF_CODE_4M.ms.fd" in pflash[0]) == secure_boot
        assert pflash[1] == "if=pflash,format=raw,unit=1,file=/w/vars.fd"
        assert ("driver=cfi.pflash01,property=secure,value=on" in _pairs(cmd, "-global")) == secure_boot
    else:
        assert pflash == [] and "-global" not in cmd
    # TPM: swtpm's socket as a chardev, an emulator tpmdev, a CRB device
    devices = _pairs(cmd, "-device")
    if tpm:
        assert f"socket,id=chrtpm,path={SOCK}" in _pairs(cmd, "-chardev")
        assert _pairs(cmd, "-tpmdev") == ["emulator,id=tpm0,chardev=chrtpm"]
        assert "tpm-crb,tpmdev=tpm0" in devices
    else:
        assert "-tpmdev" not in cmd and not any(d.startswith("tpm-") for d in devices)
    # system disk first in the boot order on the virtio bus asked for
    disk_devs = [d for d in devices if "drive=disk" in d]
    if bus == "virtio-blk":
        assert disk_devs[0] == "virtio-blk-pci,drive=disk0,bootindex=1"
        assert "virtio-scsi-pci,id=scsi0" not in devices
    else:
        assert disk_devs[0] == "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=1"
        assert "virtio-scsi-pci,id=scsi0" in devices
    # both CDs on the chipset's IDE/AHCI (Windows PE reads them with in-box drivers)
    assert disk_devs[1].startswith("ide-cd,drive=disk1,") and "bootindex=2" in disk_devs[1]
    assert disk_devs[2].startswith("ide-cd,drive=disk2,") and "bootindex=3" in disk_devs[2]
    if firmware == "bios":
        assert "bus=ide.0,unit=0" in disk_devs[1] and "bus=ide.0,unit=1" in disk_devs[2]
    else:
        assert "bus=ide.0" in disk_devs[1] and "bus=ide.1" in disk_devs[2]
    cd_drives = [d for d in _pairs(cmd, "-drive") if "media=cdrom" in d]
    assert len(cd_drives) == 2 and all("format=raw" in d and "readonly=on" in d for d in cd_drives)
    # virtio-net, tablet, Setup's reboots stay in the run, hyperv only where it helps (not TCG)
    assert "virtio-net-pci,netdev=net0" in devices
    assert "usb-tablet,bus=xhci.0" in devices
    assert "-no-reboot" not in cmd
    assert _pairs(cmd, "-cpu") == ["max"]
    assert cmd[0] == ("qemu-system-x86_64" if arch == "x86_64" else "qemu-system-i386")


def test_hyperv_enlightenments_under_kvm_only_one_cpu_flag():
    m = WindowsMachine(arch="x86_64", firmware="bios")
    cmd = build_command(win_spec(m, KVM, system_disk=Path("/w/s.qcow2")), None)
    assert _pairs(cmd, "-cpu") == ["host," + ",".join(HYPERV_FLAGS)]
    plain = build_command(MachineSpec(arch="x86_64", accel=KVM), None)
    assert _pairs(plain, "-cpu") == ["host"]   # Linux guests unchanged


@pytest.mark.parametrize("bad,match", [
    (dict(firmware="bios", secure_boot=True), "Secure Boot needs UEFI"),
    (dict(firmware="uefi", secure_boot=True, chipset="pc"), "q35"),
    (dict(tpm="tpm1.2"), "tpm"),
    (dict(chipset="isapc"), "chipset"),
])
def test_impossible_machines_are_refused(bad, match):
    with pytest.raises(UsageError, match=match):
        build_command(MachineSpec(arch="x86_64", accel=TCG, **bad), None, tpm_socket=SOCK)


def test_tpm_without_its_socket_is_refused_and_bad_bus_too():
    with pytest.raises(UsageError, match="swtpm"):
        build_command(MachineSpec(arch="x86_64", accel=TCG, tpm="swtpm"), None)
    with pytest.raises(UsageError, match="disk_bus"):
        win_spec(WindowsMachine(arch="x86_64", firmware="bios", disk_bus="ide"), TCG, system_disk=Path("/x"))


def test_efi_vars_are_a_private_copy_of_the_right_template(tmp_path):
    sb = prepare_efi_vars(tmp_path / "sb.fd", secure_boot=True)
    plain = prepare_efi_vars(tmp_path / "plain.fd")
    assert sb.read_bytes() == Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd").read_bytes()
    assert plain.read_bytes() == Path("/usr/share/OVMF/OVMF_VARS_4M.fd").read_bytes()
    assert sb.read_bytes() != plain.read_bytes()       # the Microsoft keys are in one only
    assert not sb.is_symlink() and os.access(sb, os.W_OK)


@pytest.mark.boot
@pytest.mark.skipif(shutil.which("swtpm") is None, reason="swtpm not installed (apt-get install swtpm)")
def test_real_swtpm_is_offered_to_qemu_and_dies_with_the_machine(tmp_path):
    """A real swtpm and a real QEMU (Secure Boot OVMF, q35): QMP query-tpm reports the emulator
    backed by our socket; both processes are gone after the block."""
    vars_ = prepare_efi_vars(tmp_path / "vars.fd", secure_boot=True)
    spec = MachineSpec(arch="x86_64", accel=TCG, firmware="uefi", secure_boot=True, tpm="swtpm",
                       efi_vars=vars_, tpm_state=tmp_path / "tpm", memory_mb=256, nic=None,
                       serial_log=tmp_path / "com1.log")
    with QemuMachine(spec) as m:
        m.start()
        tpms = m.qmp.execute("query-tpm")
        models = m.qmp.execute("query-tpm-models")
        time.sleep(2)   # the firmware talks to the TPM early; swtpm must still be serving
        assert m.running() and m.swtpm.poll() is None
        swtpm_pid, qemu_pid = m.swtpm.pid, m.pid
    assert "tpm-crb" in models
    assert len(tpms) == 1 and tpms[0]["model"] == "tpm-crb"
    opts = tpms[0]["options"]
    assert opts["type"] == "emulator" and opts["data"]["chardev"] == "chrtpm"
    # swtpm wrote its TPM 2.0 state where we asked (the firmware initialised it)
    assert any((tmp_path / "tpm").iterdir())
    for pid in (swtpm_pid, qemu_pid):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
