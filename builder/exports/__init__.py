"""Exports: one image, written the way each target platform insists on.

Each format is a function ``write(src, src_format, machine, workdir, base) -> file name`` in its own
small module; ``FORMATS`` is the one table of them. ``src_format`` is always passed explicitly to
qemu-img (an untrusted raw image must never be probed into something else). The libvirt domain XML
is not a disk: it names the disk's final absolute path, so it is rendered where the files are placed
(builder.publish, and ``ironforge export``), by builder.exports.libvirt_xml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from builder.errors import UsageError
from builder.exports import disks, gce, ova, vagrant
from builder.exports.machine import Machine

Writer = Callable[[Path, str, Machine, Path, str], str]


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str                      # published file name: <name>.<suffix>
    write: Writer | None             # None: rendered at placement (libvirt XML)
    max_virtual_size: int | None = None
    doc: str = ""
    # the file describes the VM (OVF envelope, Vagrantfile): the machine is part of its cache key;
    # a plain disk is written with machine=None
    machine: bool = False


GiB = 1 << 30
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("qcow2", "qcow2", disks.qcow2, doc="qcow2, compressed when outputs.compress (the default)"),
    Format("raw", "raw", disks.raw, doc="raw, sparse"),
    Format("vmdk", "vmdk", disks.vmdk, doc="VMware: streamOptimized, adapter lsilogic, hwversion "
           f"{disks.VMDK_HWVERSION}"),
    Format("ova", "ova", ova.write, max_virtual_size=None,
           doc="OVA: ustar .ovf, .mf (SHA256), streamOptimized vmdk", machine=True),
    Format("vhdx", "vhdx", disks.vhdx, max_virtual_size=64 << 40, doc="Hyper-V: vhdx, dynamic"),
    Format("vhd-azure", "vhd", disks.vhd_azure, max_virtual_size=disks.VHD_MAX,
           doc="Azure: fixed VHD, force_size, a whole number of MiB"),
    Format("vdi", "vdi", disks.vdi, doc="VirtualBox: vdi, dynamic"),
    Format("gce", "gce.tar.gz", gce.write, doc="GCE: disk.raw alone in an oldgnu sparse tar.gz"),
    Format("vagrant-libvirt", "vagrant-libvirt.box", vagrant.write,
           doc="Vagrant (libvirt provider): box.img, metadata.json, Vagrantfile in a tar.gz", machine=True),
    Format("libvirt", "xml", None, doc="libvirt domain XML naming the published qcow2", machine=True),
)}


def check(fmt: str, virtual_size: int) -> Format:
    """The Format for ``fmt``, refusing (exit 2, naming the format) what it cannot hold."""
    f = FORMATS.get(fmt)
    if f is None:
        raise UsageError(f"unknown export format {fmt!r}", hint="formats: " + ", ".join(FORMATS))
    if f.max_virtual_size is not None and virtual_size > f.max_virtual_size:
        raise UsageError(f"format {fmt}: a {virtual_size / GiB:.1f} GiB disk does not fit "
                         f"(limit {f.max_virtual_size / GiB:.0f} GiB)",
                         hint=f"choose another format than {fmt} for a disk this large")
    return f
