"""OVA: a ustar tar of ``<name>.ovf``, ``<name>.mf``, ``<name>-disk1.vmdk``, in that order.

What importers insist on (specs/conversion.md §5): ustar; the .ovf first; the manifest lists the
.ovf too, as ``SHA256(file)= hex`` lines (vCenter rejects other spellings); ``ovf:size`` is the
disk file's exact size; the disk is a streamOptimized vmdk on an lsilogic controller (VirtualSCSI
is rejected by some importers); every Section has an Info; OVF 1.x, not 2.0.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from xml.etree import ElementTree as ET

from builder import qemu_img
from builder.cache.store import sha256_file
from builder.errors import BuildError
from builder.exports import disks
from builder.exports.machine import Machine

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW = "http://www.vmware.com/schema/ovf"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
VMDK_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
USTAR_MAX = (1 << 33) - 1   # 11 octal digits of size field
# (CIM OS id, VMware guest id): what vSphere shows as the guest OS
OS_IDS = {"debian": ("96", "debian10_64Guest"), "windows": ("103", "windows9Server64Guest"),
          "linux": ("101", "otherLinux64Guest")}

for _p, _u in (("ovf", OVF), ("rasd", RASD), ("vssd", VSSD), ("vmw", VMW), ("xsi", XSI)):
    ET.register_namespace(_p, _u)


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _sub(parent, ns, tag, text=None, **attrs):
    el = ET.SubElement(parent, _q(ns, tag), {(_q(OVF, k[4:]) if k.startswith("ovf_") else
                                             _q(VMW, k[4:]) if k.startswith("vmw_") else k): str(v)
                                            for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def _item(hw, instance: int, rtype: int, name: str, **fields):
    item = _sub(hw, OVF, "Item")
    # rasd children must come in alphabetical order (the CIM schema is a sequence)
    values = {"ElementName": name, "InstanceID": instance, "ResourceType": rtype, **fields}
    for key in sorted(values):
        _sub(item, RASD, key, values[key])
    return item


def envelope(machine: Machine, disk_name: str, disk_bytes: int, capacity: int) -> bytes:
    env = ET.Element(_q(OVF, "Envelope"), {_q(VMW, "buildId"): "ironforge"})
    refs = _sub(env, OVF, "References")
    _sub(refs, OVF, "File", ovf_href=disk_name, ovf_id="file1", ovf_size=disk_bytes)
    ds = _sub(env, OVF, "DiskSection")
    _sub(ds, OVF, "Info", "Virtual disk information")
    _sub(ds, OVF, "Disk", ovf_capacity=capacity, ovf_capacityAllocationUnits="byte",
         ovf_diskId="vmdisk1", ovf_fileRef="file1", ovf_format=VMDK_FORMAT)
    ns = _sub(env, OVF, "NetworkSection")
    _sub(ns, OVF, "Info", "The list of logical networks")
    net = _sub(ns, OVF, "Network", ovf_name="VM Network")
    _sub(net, OVF, "Description", "The VM Network network")
    vs = _sub(env, OVF, "VirtualSystem", ovf_id=machine.name)
    _sub(vs, OVF, "Info", "A virtual machine")
    _sub(vs, OVF, "Name", machine.name)
    cim, vmw_os = OS_IDS.get(machine.family, OS_IDS["linux"])
    oss = _sub(vs, OVF, "OperatingSystemSection", ovf_id=cim, vmw_osType=vmw_os)
    _sub(oss, OVF, "Info", "The kind of installed guest operating system")
    hw = _sub(vs, OVF, "VirtualHardwareSection")
    _sub(hw, OVF, "Info", "Virtual hardware requirements")
    system = _sub(hw, OVF, "System")
    for key, value in (("ElementName", "Virtual Hardware Family"), ("InstanceID", 0),
                       ("VirtualSystemIdentifier", machine.name),
                       ("VirtualSystemType", f"vmx-{disks.VMDK_HWVERSION}")):
        _sub(system, VSSD, key, value)
    _item(hw, 1, 3, f"{machine.vcpus} virtual CPU(s)", AllocationUnits="hertz * 10^6",
          Description="Number of Virtual CPUs", VirtualQuantity=machine.vcpus)
    _item(hw, 2, 4, f"{machine.memory_mib}MB of memory", AllocationUnits="byte * 2^20",
          Description="Memory Size", VirtualQuantity=machine.memory_mib)
    _item(hw, 3, 6, "SCSI Controller 0", Address=0, Description="SCSI Controller",
          ResourceSubType="lsilogic")
    _item(hw, 4, 17, "Hard Disk 1", AddressOnParent=0, HostResource="ovf:/disk/vmdisk1", Parent=3)
    for n in range(machine.nics):
        _item(hw, 5 + n, 10, f"Network adapter {n + 1}", AddressOnParent=7 + n,
                     AutomaticAllocation="true", Connection="VM Network",
                     Description="E1000 ethernet adapter (every importer and guest has its driver)",
                     ResourceSubType="E1000")
    _sub(hw, VMW, "Config", ovf_required="false", vmw_key="firmware",
         vmw_value="efi" if machine.firmware == "uefi" else "bios")
    ET.indent(env)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(env, encoding="utf-8") + b"\n"


def write(src: Path, src_format: str, machine: Machine, workdir: Path, base: str) -> str:
    stage = workdir / f".{base}.ova.d"
    stage.mkdir()
    try:
        disk = stage / f"{base}-disk1.vmdk"
        qemu_img.convert(src, disk, "vmdk", src_format=src_format, options=disks.VMDK_OPTIONS,
                         what="export ova: disk")
        size = disk.stat().st_size
        if size > USTAR_MAX:
            raise BuildError(f"format ova: the compressed disk is {size >> 30} GiB; a ustar member holds "
                             "at most 8 GiB", hint="export vmdk instead and import the disk alone")
        capacity = int(qemu_img.info(src, fmt=src_format)["virtual-size"])
        ovf = stage / f"{base}.ovf"
        ovf.write_bytes(envelope(machine, disk.name, size, capacity))
        mf = stage / f"{base}.mf"
        mf.write_text("".join(f"SHA256({p.name})= {sha256_file(p)}\n" for p in (ovf, disk)))
        out = workdir / f"{base}.ova"
        with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
            for p in (ovf, mf, disk):
                info = tar.gettarinfo(p, arcname=p.name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with p.open("rb") as fh:
                    tar.addfile(info, fh)
        return out.name
    finally:
        for p in stage.iterdir():
            p.unlink()
        stage.rmdir()


