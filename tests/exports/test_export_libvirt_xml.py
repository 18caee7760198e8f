"""builder.exports.libvirt_xml: libvirt's own schema (virt-xml-validate) accepts what we write."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from defusedxml import ElementTree as DET

from builder.exports import libvirt_xml
from builder.exports.machine import Machine


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, timeout=120)


def test_exported_domain_validates_and_names_the_published_disk(exported):
    xml = exported.dir / "tiny.xml"
    res = validate(xml)
    assert res.returncode == 0, res.stdout + res.stderr
    dom = DET.parse(xml).getroot()
    assert dom.findtext("name") == "tiny"
    assert dom.findtext("memory") == str(512 * 1024) and dom.find("memory").get("unit") == "KiB"
    assert dom.findtext("vcpu") == "2"
    assert dom.find("os").get("firmware") == "efi"
    src = dom.find("devices/disk/source").get("file")
    assert src == str((exported.dir / "tiny.qcow2").resolve()) and Path(src).is_file()
    assert dom.find("devices/disk/driver").get("type") == "qcow2"


@pytest.mark.parametrize("firmware,domain_type", [("bios", "qemu"), ("uefi", "kvm")])
def test_variants_validate(tmp_path, firmware, domain_type):
    m = Machine(name="v", vcpus=4, memory_mib=2048, firmware=firmware, nics=2)
    path = tmp_path / "d.xml"
    path.write_text(libvirt_xml.domain(m, tmp_path / "d.raw", "raw", domain_type=domain_type,
                                       serial_log=tmp_path / "serial.log" if domain_type == "qemu" else None))
    assert validate(path).returncode == 0
    dom = DET.parse(path).getroot()
    assert len(dom.findall("devices/interface")) == 2
    assert (dom.find("os").get("firmware") == "efi") == (firmware == "uefi")


def test_schema_check_is_real(tmp_path):
    """virt-xml-validate rejects a domain with an element libvirt does not know (<vcpus>)."""
    bad = tmp_path / "bad.xml"
    text = libvirt_xml.domain(Machine("v", 1, 128, "bios"), tmp_path / "d.raw", "raw")
    bad.write_text(text.replace("<vcpu", "<vcpus"))
    assert validate(bad).returncode != 0


def test_relative_disk_path_is_refused():
    with pytest.raises(ValueError):
        libvirt_xml.domain(Machine("v", 1, 128, "bios"), Path("d.raw"), "raw")
