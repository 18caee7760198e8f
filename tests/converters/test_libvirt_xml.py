"""converters.libvirt_xml: a domain XML with file disks; block and network disks refused."""

from __future__ import annotations

import shutil

import pytest

import converters_support as S
from builder.errors import UnsafeImageError
from converters.libvirt_xml import parse

DOMAIN = """<domain type='kvm'>
  <name>xen-guest</name>
  <memory unit='GiB'>2</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
      <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{src0}'/><target dev='xvda' bus='xen'/></disk>
    <disk type='file' device='cdrom'><source file='/isos/x.iso'/><target dev='hdc' bus='ide'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='data.img'/><target dev='xvdb' bus='xen'/></disk>
    {extra}
    <interface type='bridge'><mac address='52:54:00:12:34:56'/><source bridge='br0'/>
      <model type='netfront'/></interface>
  </devices>
</domain>
"""


def _dom(tmp_path, good, extra="", src0=None):
    d = tmp_path / "dom"
    d.mkdir()
    shutil.copy(good[("qcow2", None)], d / "root.qcow2")
    shutil.copy(good[("raw", None)], d / "data.img")
    (d / "dom.xml").write_text(DOMAIN.format(extra=extra, src0=src0 or (d / "root.qcow2")))
    return d / "dom.xml"


def test_domain_fields(tmp_path, good):
    vm = parse(_dom(tmp_path, good))
    assert (vm.name, vm.memory_mib, vm.vcpus, vm.firmware) == ("xen-guest", 2048, 2, "uefi")
    assert [(d.path.name, d.format, d.bus) for d in vm.disks] == [("root.qcow2", "qcow2", "xen"),
                                                                   ("data.img", "raw", "xen")]
    assert [(n.mac, n.model, n.network) for n in vm.nics] == [("52:54:00:12:34:56", "netfront", "br0")]


@pytest.mark.parametrize("extra,match", [
    ("<disk type='block' device='disk'><source dev='/dev/sda'/><target dev='xvdc'/></disk>", "type 'block'"),
    ("<disk type='network' device='disk'><source protocol='nbd' name='x'><host name='h' port='10809'/></source>"
     "<target dev='xvdc'/></disk>", r"type 'network' \(nbd\)"),
    ("<disk type='network' device='disk'><source protocol='http' name='/d.img'><host name='h'/></source>"
     "<target dev='xvdc'/></disk>", r"\(http\)"),
])
def test_non_file_disks_refused(tmp_path, good, extra, match):
    with pytest.raises(UnsafeImageError, match=match):
        parse(_dom(tmp_path, good, extra))


def test_disk_outside_the_xml_folder_refused(tmp_path, good):
    sent, _ = S.sentinel(tmp_path)
    with pytest.raises(UnsafeImageError, match="absolute path"):
        parse(_dom(tmp_path, good, src0=sent))


def test_declared_type_must_match_the_header(tmp_path, good):
    x = _dom(tmp_path, good)
    x.write_text(x.read_text().replace("type='raw'", "type='qcow2'"))
    with pytest.raises(UnsafeImageError, match="its header says raw"):
        parse(x)
