"""Fixture makers for the converters tests: real qemu-img images, OVAs, VMX, domain XML,
hostile variants, and the sentinel that proves no host file reached an output."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

# (qemu format, subformat) of every good disk fixture (tests/converters/conftest.py makes each once)
GOOD = [("raw", None), ("qcow2", None), ("vmdk", None), ("vmdk", "streamOptimized"), ("vmdk", "monolithicFlat"),
        ("vmdk", "twoGbMaxExtentSparse"), ("vpc", "dynamic"), ("vpc", "fixed"), ("vhdx", None), ("vdi", None),
        ("parallels", None)]
MiB = 1 << 20
SIZE = 16 * MiB


def qimg(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True, text=True)


def source_raw(path: Path) -> Path:
    """A 16 MiB raw disk with recognisable data at a few offsets (the rest stays sparse)."""
    with open(path, "wb") as f:
        f.truncate(SIZE)
        for i, off in enumerate((0, 3 * MiB + 4096, 9 * MiB, SIZE - 65536)):
            f.seek(off)
            f.write(hashlib.sha256(f"block{i}".encode()).digest() * 2048)
    return path


def make_disk(dirpath: Path, raw: Path, fmt: str, sub: str | None = None, name: str | None = None) -> Path:
    ext = {"vpc": "vhd", "parallels": "hds"}.get(fmt, fmt)
    out = dirpath / (name or f"disk-{fmt}{'-' + sub if sub else ''}.{ext}")
    opts = ["-o", f"subformat={sub}"] if sub else []
    qimg("convert", "-f", "raw", "-O", fmt, *opts, raw, out)
    return out


def same_contents(src: Path, fmt: str, dst: Path) -> bool:
    return subprocess.run(["qemu-img", "compare", "-f", fmt, "-F", "qcow2", str(src), str(dst)],
                          capture_output=True).returncode == 0


def sentinel(dirpath: Path) -> tuple[Path, bytes]:
    """A host file whose bytes must never show up in anything we produce."""
    marker = f"IRONFORGE-SENTINEL-{uuid.uuid4().hex}".encode()
    p = dirpath / "sentinel"
    p.write_bytes(marker * (SIZE // len(marker) + 1))
    return p, marker


def assert_no_sentinel(root: Path, marker: bytes) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink() or p.name == "sentinel":
                continue
            assert marker not in p.read_bytes(), f"{p} holds sentinel bytes: a host file leaked in"
            out = subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", f"if={p}", "of=/dev/stdout"],
                                 capture_output=True) if p.suffix == ".qcow2" else None
            if out is not None and out.returncode == 0:
                assert marker not in out.stdout, f"{p} (guest view) holds sentinel bytes"


def sha(algo: str, p: Path) -> str:
    return hashlib.new(algo, p.read_bytes()).hexdigest()


OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
 xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>{files}</References>
  <DiskSection><Info>disks</Info>{disks}</DiskSection>
  <VirtualSystem ovf:id="vm1">
    <Info>vm</Info><Name>{name}</Name>
    <VirtualHardwareSection>
      <Info>hw</Info>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>4</rasd:VirtualQuantity>
        <vmw:CoresPerSocket ovf:required="false">2</vmw:CoresPerSocket></Item>
      <Item><rasd:AllocationUnits>{mem_units}</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>{mem_qty}</rasd:VirtualQuantity></Item>
      <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType></Item>
      {disk_items}
      <Item><rasd:Address>00:50:56:aa:bb:cc</rasd:Address><rasd:Connection>VM Network</rasd:Connection>
        <rasd:InstanceID>9</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType></Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def ovf_text(disk_names: list[str], name: str = "vmware-guest", mem_qty: int = 2, mem_units: str = "byte * 2^30",
             hrefs: list[str] | None = None) -> str:
    hrefs = hrefs or disk_names
    files = "".join(f'<File ovf:href="{h}" ovf:id="file{i}"/>' for i, h in enumerate(hrefs))
    disks = "".join(f'<Disk ovf:capacity="16" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk{i}" '
                    f'ovf:fileRef="file{i}" ovf:format="http://www.vmware.com/interfaces/specifications/'
                    f'vmdk.html#streamOptimized"/>' for i in range(len(hrefs)))
    items = "".join(f"<Item><rasd:AddressOnParent>{i}</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk{i}"
                    f"</rasd:HostResource><rasd:InstanceID>{10 + i}</rasd:InstanceID><rasd:Parent>3</rasd:Parent>"
                    f"<rasd:ResourceType>17</rasd:ResourceType></Item>" for i in range(len(hrefs)))
    return OVF.format(files=files, disks=disks, name=name, disk_items=items, mem_qty=mem_qty, mem_units=mem_units)


def write_ova_folder(d: Path, disks: list[Path], mf_algo: str | None = "SHA256", **kw) -> Path:
    """An unpacked OVA: name.ovf, the disks, name.mf (virt-v2v's line shape, CRLF for SHA1)."""
    d.mkdir(parents=True, exist_ok=True)
    ovf = d / "guest.ovf"
    ovf.write_text(ovf_text([p.name for p in disks], **kw))
    for p in disks:
        if p.parent != d:
            os.link(p, d / p.name) if p.stat().st_dev == d.stat().st_dev else (d / p.name).write_bytes(p.read_bytes())
    if mf_algo:
        eol = "\r\n" if mf_algo == "SHA1" else "\n"
        lines = [f"{mf_algo}({n})= {sha(mf_algo.lower(), d / n)}{eol}" for n in [ovf.name] + [p.name for p in disks]]
        (d / "guest.mf").write_text("".join(lines), newline="")
    return d


def pack_tar(folder: Path, out: Path, mode: str = "w") -> Path:
    """OVA order: .ovf first, then .mf, then the rest."""
    names = sorted(os.listdir(folder), key=lambda n: (not n.endswith(".ovf"), not n.endswith(".mf"), n))
    with tarfile.open(out, mode, format=tarfile.USTAR_FORMAT) as t:
        for n in names:
            t.add(folder / n, arcname=n)
    return out


def tar_with(out: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(out, mode, format=tarfile.GNU_FORMAT) as t:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return out


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, link, mode
    return ti


def stage_context(tmp: Path, srcs: list[Path], name: str | None = None):
    """A StageContext for converters.stages.import_ run directly (no engine, no appliance)."""
    from builder.cache.store import Store
    from builder.stage import StageContext
    from converters import command
    work = tmp / f"work-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    return StageContext(recipe=command.recipe_for(srcs, name, None), accel=None, store=Store(tmp / "cache"),
                        workdir=work, log=logging.getLogger("test.import"), options=command.options(srcs, name))
