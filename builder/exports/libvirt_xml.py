"""The one libvirt domain XML writer (exports and conversion's output use it).

Modelled on what virt-v2v writes (specs/conversion.md §5): memory/currentMemory in KiB, vcpu,
``<os firmware='efi'>`` for UEFI, acpi/apic, virtio disk and NIC, serial + console, virtio rng,
memballoon. ``domain_type='qemu'`` is for hosts without usable KVM (TCG); a ``serial_log`` file
makes the serial console readable without a libvirt connection (boot checks read it).
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from builder.exports.machine import Machine

from builder.runner.machine import FW_CFG_PREFIX  # the names the guest probe reads


def _sub(parent, tag, text=None, **attrs):
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def domain(machine: Machine, disk: Path, disk_format: str, *, domain_type: str = "kvm",
           serial_log: Path | None = None, network: str | None = "default",
           fw_cfg: dict[str, str] | None = None, smbios_oem_strings: tuple[str, ...] = ()) -> str:
    """``network=None``: user-mode networking (no libvirt network needed, e.g. a private session
    daemon). ``fw_cfg`` (names under opt/ironforge/) and SMBIOS OEM strings carry a verification
    boot's nonce, as QemuMachine passes them."""
    if not Path(disk).is_absolute():
        raise ValueError(f"libvirt needs an absolute disk path, not {disk}")
    dom = ET.Element("domain", type=domain_type)
    _sub(dom, "name", machine.name)
    _sub(dom, "memory", machine.memory_mib * 1024, unit="KiB")
    _sub(dom, "currentMemory", machine.memory_mib * 1024, unit="KiB")
    _sub(dom, "vcpu", machine.vcpus, placement="static")
    os_el = _sub(dom, "os", **({"firmware": "efi"} if machine.firmware == "uefi" else {}))
    _sub(os_el, "type", "hvm", arch=machine.arch, machine="q35")
    _sub(os_el, "boot", dev="hd")
    if smbios_oem_strings:
        _sub(os_el, "smbios", mode="sysinfo")
    if fw_cfg:
        sysinfo = _sub(dom, "sysinfo", type="fwcfg")
        for name, value in fw_cfg.items():
            _sub(sysinfo, "entry", value, name=FW_CFG_PREFIX + name)
    if smbios_oem_strings:
        oem = _sub(_sub(dom, "sysinfo", type="smbios"), "oemStrings")
        for text in smbios_oem_strings:
            _sub(oem, "entry", text)
    feats = _sub(dom, "features")
    _sub(feats, "acpi")
    _sub(feats, "apic")
    if domain_type == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "restart")
    dev = _sub(dom, "devices")
    d = _sub(dev, "disk", type="file", device="disk")
    _sub(d, "driver", name="qemu", type=disk_format)
    _sub(d, "source", file=str(disk))
    _sub(d, "target", dev="vda", bus="virtio")
    for i in range(machine.nics):
        nic = _sub(dev, "interface", type="network" if network else "user")
        if i < len(machine.macs) and machine.macs[i]:
            _sub(nic, "mac", address=machine.macs[i])   # the guest's network config may be bound to it
        if network:
            _sub(nic, "source", network=network)
        _sub(nic, "model", type="virtio")
    serial = _sub(dev, "serial", type="file" if serial_log else "pty")
    if serial_log:
        _sub(serial, "source", path=str(serial_log))
    _sub(serial, "target", port=0)
    con = _sub(dev, "console", type="file" if serial_log else "pty")
    if serial_log:
        _sub(con, "source", path=str(serial_log))
    _sub(con, "target", type="serial", port=0)
    _sub(dev, "graphics", type="vnc", autoport="yes")
    _sub(_sub(dev, "video"), "model", type="vga")
    rng = _sub(dev, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(dev, "memballoon", model="virtio")
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"
