"""converters.stages.export: a converted guest's outputs describe the machine its source VM was
(CPUs, memory, firmware, MACs), in a domain XML libvirt's own schema accepts. No launch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from defusedxml import ElementTree as DET

from builder.exports import libvirt_xml
from builder.exports.machine import Machine
from builder.recipe import Recipe
from converters.model import Nic, SourceDisk, SourceVM
from converters.stages.export import machine_for


def recipe(arch="amd64", firmware="bios"):
    return Recipe(name="web", path=None, values={"arch": arch, "firmware": firmware, "build": {"method": "convert"},
                                                 "os": {"family": "debian", "release": "12"}})


def source_vm(**kw):
    vm = SourceVM(name="src-name", vcpus=4, memory_mib=6144, firmware="bios",
                  disks=[SourceDisk(path=Path("/x/d.vmdk"), format="vmdk", bus="scsi", controller="pvscsi")],
                  nics=[Nic(mac="00:50:56:9A:3C:51", model="vmxnet3"), Nic(mac=None, model="e1000"),
                        Nic(mac="01:00:5e:00:00:01", model="e1000"), Nic(mac="00:50:56:aa:bb:cc'/>", model="x")],
                  origin="ova")
    return SourceVM(**{**vm.__dict__, **kw})


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, timeout=120)


def test_machine_is_the_source_vms_with_the_recipes_name_arch_and_firmware():
    # the import stage records the SourceVM as a dict; that is what the export stage reads
    m = machine_for(recipe("i386", "uefi"), source_vm().to_dict())
    assert (m.name, m.vcpus, m.memory_mib, m.arch, m.firmware, m.nics) == ("web", 4, 6144, "i686", "uefi", 4)
    # the unicast MAC kept (normalised); none, a multicast one and a malformed one left to libvirt
    assert m.macs == ("00:50:56:9a:3c:51", "", "", "")


def test_no_source_description_falls_back_to_the_recipe():
    m = machine_for(recipe(), None)
    assert (m.name, m.vcpus, m.memory_mib, m.macs) == ("web", 1, 1024, ())


def test_machine_survives_the_manifest_round_trip_and_refuses_a_bad_mac():
    m = machine_for(recipe(), source_vm().to_dict())
    back = Machine(**json.loads(json.dumps(vars(m))))     # publish rebuilds it from the export's data
    assert back == m
    with pytest.raises(ValueError):
        Machine(**{**vars(m), "macs": ["00:50:56:aa:bb:cc'/><x a='"]})


def test_domain_xml_carries_the_source_shape_and_mac_and_validates(tmp_path):
    m = machine_for(recipe(), source_vm(nics=[Nic(mac="00:50:56:9a:3c:51", model="vmxnet3"),
                                              Nic(mac=None, model="e1000")]).to_dict())
    xml = tmp_path / "web.xml"
    xml.write_text(libvirt_xml.domain(m, tmp_path / "web.qcow2", "qcow2"))
    res = validate(xml)
    assert res.returncode == 0, res.stdout + res.stderr
    dom = DET.parse(xml).getroot()
    assert (dom.findtext("vcpu"), dom.find("memory").text, dom.find("memory").get("unit")) == ("4", str(6144 * 1024), "KiB")
    nics = dom.findall("devices/interface")
    assert [n.find("mac").get("address") if n.find("mac") is not None else None for n in nics] == \
        ["00:50:56:9a:3c:51", None]
    assert all(n.find("model").get("type") == "virtio" for n in nics)
