"""builder.exports.ova: read back with Python's tarfile and defusedxml, then given to virt-v2v
(-i ova --print-source), a real importer that checks the manifest and parses the OVF."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile

from defusedxml import ElementTree as DET

from builder.host.accel import choose
from exports_support import SIZE

OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"
RASD = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"
VMW = "{http://www.vmware.com/schema/ovf}"


def members(path):
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


def test_member_order_and_ustar_headers(exported):
    path = exported.dir / "tiny.ova"
    names = [m.name for m, _ in members(path)]
    assert names == ["tiny.ovf", "tiny.mf", "tiny-disk1.vmdk"]
    # every header block says POSIX ustar ("ustar\0" + "00"), not GNU ("ustar  \0") or pax
    raw = path.read_bytes()
    offset = 0
    for m, data in members(path):
        header = raw[offset:offset + 512]
        assert header[257:265] == b"ustar\x0000", m.name
        assert m.type == tarfile.REGTYPE
        offset += 512 + -(-len(data) // 512) * 512


def test_manifest_lists_every_file_with_correct_sha256(exported):
    files = dict((m.name, data) for m, data in members(exported.dir / "tiny.ova"))
    lines = files["tiny.mf"].decode().splitlines()
    listed = {}
    for line in lines:
        m = re.fullmatch(r"SHA256\(([^)]+)\)= ([0-9a-f]{64})", line)
        assert m, line
        listed[m.group(1)] = m.group(2)
    assert set(listed) == {"tiny.ovf", "tiny-disk1.vmdk"}
    for name, digest in listed.items():
        assert hashlib.sha256(files[name]).hexdigest() == digest


def test_ovf_describes_the_machine_and_the_disk(exported):
    files = dict((m.name, data) for m, data in members(exported.dir / "tiny.ova"))
    env = DET.fromstring(files["tiny.ovf"])
    ref = env.find(f"{OVF}References/{OVF}File")
    assert ref.get(f"{OVF}href") == "tiny-disk1.vmdk"
    assert int(ref.get(f"{OVF}size")) == len(files["tiny-disk1.vmdk"])
    disk = env.find(f"{OVF}DiskSection/{OVF}Disk")
    assert int(disk.get(f"{OVF}capacity")) == SIZE
    assert disk.get(f"{OVF}format").endswith("vmdk.html#streamOptimized")
    hw = env.find(f"{OVF}VirtualSystem/{OVF}VirtualHardwareSection")
    items = {int(i.find(f"{RASD}ResourceType").text): i for i in hw.findall(f"{OVF}Item")}
    assert items[3].find(f"{RASD}VirtualQuantity").text == "2"
    assert items[4].find(f"{RASD}VirtualQuantity").text == "512"
    assert items[4].find(f"{RASD}AllocationUnits").text == "byte * 2^20"
    assert items[6].find(f"{RASD}ResourceSubType").text == "lsilogic"
    assert items[17].find(f"{RASD}HostResource").text == "ovf:/disk/vmdisk1"
    assert items[17].find(f"{RASD}Parent").text == items[6].find(f"{RASD}InstanceID").text
    assert items[10].find(f"{RASD}ResourceSubType").text == "E1000"
    config = hw.find(f"{VMW}Config")
    assert (config.get(f"{VMW}key"), config.get(f"{VMW}value")) == ("firmware", "efi")
    for section in ("DiskSection", "NetworkSection", "VirtualSystem", "VirtualSystem/OperatingSystemSection",
                    "VirtualSystem/VirtualHardwareSection"):
        assert env.find(f"{OVF}" + section.replace("/", f"/{OVF}") + f"/{OVF}Info") is not None, section


def test_virt_v2v_reads_our_ova(exported):
    """--print-source only parses the OVA (manifest check, OVF, disk list): no guest needs to boot,
    and a disk with no operating system is enough (measured here: about a second)."""
    env = dict(os.environ, **choose().peer_env())
    res = subprocess.run(["virt-v2v", "-i", "ova", str(exported.dir / "tiny.ova"), "--print-source"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert re.search(r"source name: tiny\n", out)
    assert re.search(r"memory: 536870912 \(bytes\)", out)
    assert re.search(r"nr vCPUs: 2\n", out)
    assert re.search(r"firmware: uefi\n", out)
    assert re.search(r"0 \[scsi\]", out)
    assert "[e1000]" in out


def test_virt_v2v_refuses_a_wrong_manifest(exported, tmp_path):
    """The acceptance above means something: the same OVA with one digest changed is rejected."""
    files = members(exported.dir / "tiny.ova")
    bad = tmp_path / "bad.ova"
    with tarfile.open(bad, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in files:
            if m.name.endswith(".mf"):
                wrong = hashlib.sha256(b"some other disk").hexdigest().encode()
                data = re.sub(rb"(SHA256\(tiny-disk1.vmdk\)= )[0-9a-f]{64}", rb"\g<1>" + wrong, data)
                assert wrong in data
            tar.addfile(m, io.BytesIO(data))
    env = dict(os.environ, **choose().peer_env())
    res = subprocess.run(["virt-v2v", "-i", "ova", str(bad), "--print-source"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode != 0
    assert "checksum" in (res.stderr + res.stdout).lower()
