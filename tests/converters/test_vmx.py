"""converters.vmx: a VMware .vmx with pvscsi and vmxnet3; absolute disk paths refused."""

from __future__ import annotations

import shutil

import pytest

import converters_support as S
from builder.errors import UnsafeImageError
from converters.vmx import parse

VMX = """.encoding = "UTF-8"
config.version = "8"
displayName = "web|20server"
memsize = "3072"
numvcpus = "4"
cpuid.coresPerSocket = "2"
firmware = "efi"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "{disk0}"
scsi0:1.present = "FALSE"
scsi0:1.fileName = "gone.vmdk"
SATA0:0.Present = "TRUE"
sata0:0.fileName = "{disk1}"
ide1:0.present = "TRUE"
ide1:0.deviceType = "cdrom-image"
ide1:0.fileName = "/isos/install.iso"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.addressType = "generated"
ethernet0.generatedAddress = "00:0c:29:12:34:56"
ethernet0.networkName = "VM Network"
ethernet1.present = "FALSE"
"""


def _vm_dir(tmp_path, good, disk0="web.vmdk", disk1="data.vmdk"):
    d = tmp_path / "vm"
    d.mkdir()
    shutil.copy(good[("vmdk", None)], d / "web.vmdk")
    shutil.copy(good[("vmdk", "streamOptimized")], d / "data.vmdk")
    (d / "web.vmx").write_text(VMX.format(disk0=disk0, disk1=disk1))
    return d / "web.vmx"


def test_vmx_fields(tmp_path, good):
    vm = parse(_vm_dir(tmp_path, good))
    assert (vm.name, vm.memory_mib, vm.vcpus, vm.cores_per_socket, vm.firmware) == ("web server", 3072, 4, 2, "uefi")
    assert [(d.path.name, d.format, d.bus, d.controller) for d in vm.disks] == [
        ("web.vmdk", "vmdk", "scsi", "pvscsi"), ("data.vmdk", "vmdk", "sata", None)]
    assert [(n.mac, n.model) for n in vm.nics] == [("00:0c:29:12:34:56", "vmxnet3")]
    assert any("CD-ROM" in n for n in vm.notes)


def test_vmx_absolute_disk_refused(tmp_path, good):
    sent, marker = S.sentinel(tmp_path)
    with pytest.raises(UnsafeImageError, match="absolute path"):
        parse(_vm_dir(tmp_path, good, disk0=str(sent)))


def test_vmx_dotdot_disk_refused(tmp_path, good):
    S.sentinel(tmp_path)
    with pytest.raises(UnsafeImageError, match="goes up a folder"):
        parse(_vm_dir(tmp_path, good, disk1="../sentinel"))
