"""Guests as VMware, Hyper-V, VirtualBox and Parallels hold them, generated from ironforge's own
Debian 12 amd64 image (tests/linux_bootstrap_support.py): no downloads.

ONE writable libguestfs launch edits four qcow2 overlays over the cached image, one per
hypervisor, each on its own drive (the same base, so inspection would see four identical
systems: each root is mounted by its device instead). Every guest gets what a Debian 12 guest of
that hypervisor looks like:

- its disk named ``/dev/sda1`` in fstab and on the kernel command line (GRUB told not to use
  UUIDs): under all four the disk is a SCSI/SATA/VMBus ``sda``;
- its NIC configured by ifupdown under the name that hypervisor's NIC gets (``ens192`` for a
  vmxnet3 on VMware, ``eth0`` for Hyper-V's netvsc, ``enp0s3``/``enp0s5`` for VirtualBox's and
  Parallels' PCI NICs);
- its guest tools under their Debian names, as STAND-IN packages installed by the guest's dpkg
  (the real ones pull in dependencies an offline appliance cannot fetch, and Debian 12 has no
  VirtualBox additions at all), so their removal by the guest's dpkg is real. Parallels Tools
  are not a package (a vendor installer script): the Parallels guest has none.

Then qemu-img (cheap, no launch) turns each overlay into its hypervisor's containers:
VMware: a streamOptimized vmdk in an OVA as tar (``.mf`` with SHA256), tar.gz (SHA1, CRLF as
VMware's ovftool writes it) and zip (SHA256), plus a monolithicSparse vmdk under a ``.vmx`` with
pvscsi and vmxnet3; Hyper-V: vhdx; VirtualBox: vdi; Parallels: ``.hds`` and a ``root.hdd/``
bundle (``DiskDescriptor.xml`` + the image, as Parallels Desktop keeps a VM's disk).

Kept in the shared test cache under a key made of the base image's key and this module's source.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import fixture_cache
from shared_cache import cache_root

from builder import qemu_img
from builder.host.accel import choose
from builder.host.guestfs_session import Drive, session

# per hypervisor: the STAND-IN tool packages, the NIC's name in the guest, its source MAC
HYPERVISORS = {
    "vmware": {"tools": ("open-vm-tools",), "ifname": "ens192", "mac": "00:50:56:9a:3c:51"},
    "hyperv": {"tools": ("hyperv-daemons",), "ifname": "eth0", "mac": "00:15:5d:01:c8:07"},
    "vbox": {"tools": ("virtualbox-guest-utils", "virtualbox-guest-x11"), "ifname": "enp0s3",
             "mac": "08:00:27:4e:21:9b"},
    "parallels": {"tools": (), "ifname": "enp0s5", "mac": "00:1c:42:7d:10:2a"},
}
# the versions Debian 12 (or, for VirtualBox, Debian's contrib before bookworm) shipped: usrmerge
# Conflicts with open-vm-tools << 2:10.0.5, so a lower stand-in version would not install
VERSIONS = {"open-vm-tools": "2:12.2.0-1", "hyperv-daemons": "6.1.158-1",
            "virtualbox-guest-utils": "6.1.38-1", "virtualbox-guest-x11": "6.1.38-1"}
VMX_MAC = "00:0c:29:5f:e1:44"     # VMware Workstation's generated prefix
OVA_VCPUS, OVA_MEMORY_MIB = 2, 1536
VMX_VCPUS, VMX_MEMORY_MIB = 2, 2048


# A STAND-IN for Parallels Tools, which are no package: what their installer leaves (its own
# uninstaller under /usr/lib/parallels-tools, an enabled prltoolsd unit whose daemon cannot run
# under KVM), with an uninstaller that removes exactly that.
PRL = "/usr/lib/parallels-tools"
PRL_UNIT = "/etc/systemd/system/prltoolsd.service"
PRL_WANTS = "/etc/systemd/system/multi-user.target.wants/prltoolsd.service"
PRL_UNINSTALL = f"""#!/bin/sh
# STAND-IN for Parallels Tools' installer: only -r (remove) is implemented
[ "$1" = "-r" ] || {{ echo "stand-in: only -r" >&2; exit 2; }}
rm -f {PRL_WANTS} {PRL_UNIT}
rm -rf {PRL}
echo "Parallels Tools (STAND-IN) removed"
"""


def _parallels_tools(g) -> None:
    g.mkdir_p(f"{PRL}/tools")
    g.write(f"{PRL}/install", PRL_UNINSTALL.encode())
    g.chmod(0o755, f"{PRL}/install")
    g.write(f"{PRL}/STAND-IN", b"ironforge test stand-in for Parallels Tools\n")
    g.write(PRL_UNIT, f"[Unit]\nDescription=Parallels Tools (STAND-IN)\n\n[Service]\nExecStart={PRL}/tools/prltoolsd\n\n"
            "[Install]\nWantedBy=multi-user.target\n".encode())
    g.ln_sf(PRL_UNIT, PRL_WANTS)


def _layout(g, root: str, hv: str, debs: list[Path]) -> None:
    """What a Debian 12 guest of hypervisor ``hv`` looks like (module docstring)."""
    spec = HYPERVISORS[hv]
    g.mount(root, "/")
    try:
        for deb in debs:
            g.upload(str(deb), f"/var/tmp/{deb.name}")
        if debs:
            g.command(["dpkg", "-i", *(f"/var/tmp/{d.name}" for d in debs)])
        if hv == "parallels":
            _parallels_tools(g)
        for deb in debs:
            g.rm(f"/var/tmp/{deb.name}")
        uuid = g.vfs_uuid(root)
        g.write("/etc/fstab", g.cat("/etc/fstab").replace(f"UUID={uuid}", "/dev/sda1").encode())
        grub = g.cat("/etc/default/grub")
        g.write("/etc/default/grub", (grub + "GRUB_DISABLE_LINUX_UUID=true\n").encode())
        g.write("/boot/grub/grub.cfg", g.cat("/boot/grub/grub.cfg").replace(f"root=UUID={uuid}", "root=/dev/sda1")
                .encode())
        g.mkdir_p("/etc/network")
        g.write("/etc/network/interfaces",
                f"auto lo\niface lo inet loopback\n\nallow-hotplug {spec['ifname']}\n"
                f"iface {spec['ifname']} inet dhcp\n".encode())
        g.write("/etc/hostname", f"deb12-{hv}\n".encode())
    finally:
        g.umount_all()


def _sha(algo: str, p: Path) -> str:
    h = hashlib.new(algo)
    with open(p, "rb") as f:
        while buf := f.read(1 << 20):
            h.update(buf)
    return h.hexdigest()


OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
 xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
 xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="{disk}" ovf:id="file1" ovf:size="{size}"/></References>
  <DiskSection><Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1"
     ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>The list of logical networks</Info><Network ovf:name="VM Network"/></NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info><Name>{name}</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian12_64Guest"><Info>OS</Info></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemType>vmx-19</vssd:VirtualSystemType></System>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>{vcpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{vcpus}</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>{memory}MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory}</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:Address>{mac}</rasd:Address><rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName><rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="bios"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""

VMX = """.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "{name}"
guestOS = "debian12-64"
numvcpus = "{vcpus}"
memSize = "{memory}"
firmware = "bios"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "{disk}"
ide1:0.present = "TRUE"
ide1:0.deviceType = "atapi-cdrom"
ide1:0.fileName = "auto detect"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.networkName = "VM Network"
ethernet0.addressType = "generated"
ethernet0.generatedAddress = "{mac}"
"""

DISK_DESCRIPTOR = """<?xml version="1.0"?>
<Parallels_disk_image Version="1.0">
  <Disk_Parameters><Disk_size>{sectors}</Disk_size><Cylinders>{cyl}</Cylinders><Heads>16</Heads>
    <Sectors>63</Sectors><Padding>0</Padding></Disk_Parameters>
  <StorageData><Storage><Start>0</Start><End>{sectors}</End><Blocksize>2048</Blocksize>
    <Image><GUID>{{5fbaabe3-6958-40ff-92a7-860e329aab41}}</GUID><Type>Compressed</Type><File>{file}</File></Image>
  </Storage></StorageData>
  <Snapshots><TopGUID>{{5fbaabe3-6958-40ff-92a7-860e329aab41}}</TopGUID>
    <Shot><GUID>{{5fbaabe3-6958-40ff-92a7-860e329aab41}}</GUID><ParentGUID>{{00000000-0000-0000-0000-000000000000}}</ParentGUID></Shot>
  </Snapshots>
</Parallels_disk_image>
"""


def _ova_folder(d: Path, vmdk: Path, vsize: int, algo: str, eol: str) -> list[Path]:
    """OVA members in OVA order (.ovf, .mf, disk), the .mf in ``algo`` with ``eol`` line ends."""
    ovf = d / "deb12-vmware.ovf"
    ovf.write_text(OVF.format(disk=vmdk.name, size=vmdk.stat().st_size, capacity=vsize, name="deb12-vmware",
                              vcpus=OVA_VCPUS, memory=OVA_MEMORY_MIB, mac=HYPERVISORS["vmware"]["mac"]))
    mf = d / "deb12-vmware.mf"
    mf.write_text("".join(f"{algo}({p.name})= {_sha(algo.lower(), p)}{eol}" for p in (ovf, vmdk)), newline="")
    return [ovf, mf, vmdk]


def _containers(tmp: Path, layers: dict[str, Path], vsize: int) -> None:
    conv = lambda src, dst, fmt, *o: qemu_img.convert(src, dst, fmt, what=f"foreign fixture {dst.name}",  # noqa: E731
                                                      options=",".join(o) or None)
    vm = tmp / "vmware"
    vm.mkdir()
    stream = tmp / "deb12-vmware.vmdk"
    conv(layers["vmware"], stream, "vmdk", "subformat=streamOptimized", "adapter_type=lsilogic")
    for name, mode, algo, eol in (("deb12-vmware.ova", "w", "SHA256", "\n"),
                                  ("deb12-vmware.ova.tar.gz", "w:gz", "SHA1", "\r\n")):
        work = tmp / f"ova-{algo}"
        work.mkdir()
        os.link(stream, work / stream.name)
        members = _ova_folder(work, work / stream.name, vsize, algo, eol)
        kw = {"compresslevel": 1} if mode == "w:gz" else {}
        with tarfile.open(tmp / name, mode, format=tarfile.USTAR_FORMAT, **kw) as t:
            for p in members:
                t.add(p, arcname=p.name)
        if algo == "SHA256":   # the zip holds the same members
            with zipfile.ZipFile(tmp / "deb12-vmware.zip", "w", compression=zipfile.ZIP_DEFLATED,
                                 compresslevel=1) as z:
                for p in members:
                    z.write(p, p.name)
        shutil.rmtree(work)
    stream.unlink()
    conv(layers["vmware"], vm / "deb12-vmware.vmdk", "vmdk", "subformat=monolithicSparse")
    (vm / "deb12-vmware.vmx").write_text(VMX.format(name="deb12-vmware", vcpus=VMX_VCPUS, memory=VMX_MEMORY_MIB,
                                                    disk="deb12-vmware.vmdk", mac=VMX_MAC))
    conv(layers["hyperv"], tmp / "deb12-hyperv.vhdx", "vhdx", "subformat=dynamic")
    conv(layers["vbox"], tmp / "deb12-vbox.vdi", "vdi")
    conv(layers["parallels"], tmp / "deb12-parallels.hds", "parallels")
    bundle = tmp / "deb12-parallels" / "root.hdd"
    bundle.mkdir(parents=True)
    os.link(tmp / "deb12-parallels.hds", bundle / "root.hds")
    sectors = vsize // 512
    (bundle / "DiskDescriptor.xml").write_text(DISK_DESCRIPTOR.format(sectors=sectors, cyl=sectors // (16 * 63),
                                                                      file="root.hds"))


# fixture name -> (path inside the fixture folder, hypervisor)
FIXTURES = {
    "ova-tar": ("deb12-vmware.ova", "vmware"),
    "ova-tar-gz": ("deb12-vmware.ova.tar.gz", "vmware"),
    "ova-zip": ("deb12-vmware.zip", "vmware"),
    "vmx": ("vmware/deb12-vmware.vmx", "vmware"),
    "vhdx": ("deb12-hyperv.vhdx", "hyperv"),
    "vdi": ("deb12-vbox.vdi", "vbox"),
    "hds": ("deb12-parallels.hds", "parallels"),
    "ploop": ("deb12-parallels/root.hdd", "parallels"),
}


def foreign() -> dict[str, Path]:
    """{fixture name: path} (FIXTURES), built once per machine: one launch, then qemu-img."""
    from linux_bootstrap_support import build
    base = build("debian-12-amd64").artifacts["drivers"]
    d = cache_root() / "convert-foreign" / fixture_cache.key(base.key, __file__)
    out = {name: d / rel for name, (rel, _hv) in FIXTURES.items()}

    def make(tmp: Path) -> None:
        layers = {hv: tmp / f"layer-{hv}.qcow2" for hv in HYPERVISORS}
        for layer in layers.values():
            qemu_img.overlay(base.image, layer, what="foreign fixture overlay")
        debs = {hv: [fixture_cache.standin_deb(tmp, p, VERSIONS[p]) for p in spec["tools"]]
                for hv, spec in HYPERVISORS.items()}
        with session([Drive(layers[hv], "qcow2", readonly=False) for hv in HYPERVISORS], choose(),
                     what="foreign fixtures") as g:
            roots = sorted(g.inspect_os())
            if len(roots) != len(HYPERVISORS) or len({re.sub(r"\d+$", "", r) for r in roots}) != len(roots):
                raise RuntimeError(f"expected one root per drive, got {roots}")
            for root, hv in zip(roots, HYPERVISORS):
                _layout(g, root, hv, debs[hv])
        _containers(tmp, layers, int(qemu_img.info(base.image)["virtual-size"]))
        for p in list(tmp.iterdir()):
            if p.name.startswith(("layer-", "pkg-")) or p.suffix == ".deb":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        (tmp / "done").write_text("")

    fixture_cache.built_once(d, d / "done", make)
    return out
