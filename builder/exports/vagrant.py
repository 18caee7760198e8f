"""Vagrant box for the libvirt provider: ``metadata.json``, ``Vagrantfile`` and ``box.img`` (qcow2)
in a tar.gz (vagrant-libvirt's box format).

``virtual_size`` in metadata.json is in GB and vagrant-libvirt grows the box's disk to it, so it is
rounded *up* to a whole GiB (as Packer does): rounding down (osbuild's ``// 1000**3``) can name a
size smaller than the image, which would ask for a shrink.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder import qemu_img
from builder.exports.machine import Machine
from builder.host import proc
from builder.host.tools import require

GiB = 1 << 30
PACK_TIMEOUT = 4 * 3600.0


def virtual_size_gb(virtual_size: int) -> int:
    return max(1, -(-virtual_size // GiB))


def metadata(virtual_size: int) -> dict:
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": virtual_size_gb(virtual_size)}


def vagrantfile(machine: Machine) -> str:
    lines = ['Vagrant.configure("2") do |config|',
             "  config.vm.provider :libvirt do |libvirt|",
             '    libvirt.driver = "kvm"',
             f"    libvirt.memory = {int(machine.memory_mib)}",
             f"    libvirt.cpus = {int(machine.vcpus)}"]
    if machine.firmware == "uefi":
        lines += ['    libvirt.machine_type = "q35"',
                  '    libvirt.loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"']
    lines += ["  end", "end", ""]
    return "\n".join(lines)


def write(src: Path, src_format: str, machine: Machine, workdir: Path, base: str) -> str:
    stage = workdir / f".{base}.box.d"
    stage.mkdir()
    names = ("metadata.json", "Vagrantfile", "box.img")
    out = workdir / f"{base}.vagrant-libvirt.box"
    try:
        qemu_img.convert(src, stage / "box.img", "qcow2", src_format=src_format, compress=True,
                         what="export vagrant-libvirt: box.img")
        vsize = int(qemu_img.info(stage / "box.img", fmt="qcow2")["virtual-size"])
        (stage / "metadata.json").write_text(json.dumps(metadata(vsize)) + "\n")
        (stage / "Vagrantfile").write_text(vagrantfile(machine))
        # box.img is already compressed qcow2: the fastest gzip level costs little and loses nothing
        proc.run([require("tar"), "-cf", str(out), "--use-compress-program=gzip -1", "-C", str(stage), *names],
                 what="export vagrant-libvirt: tar", timeout=PACK_TIMEOUT)
        return out.name
    finally:
        for n in names:
            (stage / n).unlink(missing_ok=True)
        stage.rmdir()
