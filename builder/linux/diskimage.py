"""Build a partitioned disk image from a root tree on the host, at native speed, unmounted.

``sfdisk`` writes the partition table on a sparse raw file; ``mke2fs -d DIR -E offset=…``
writes the ext4 filesystem, populated from the tree, straight into its partition (no copy, no
mount, no loop device); ``mkfs.fat --offset`` does the same for an ESP; ``qemu-img convert``
makes the qcow2. What must run inside the guest (GRUB) is left to one appliance launch.

Identifiers are derived from the recipe name (uuid5), so a rebuild gets the same filesystem
UUIDs and the same fstab and grub.cfg.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.host import proc as hostproc
from builder.host import tools

log = logging.getLogger("ironforge.linux.diskimage")

MiB = 1024 * 1024
SECTOR = 512
ESP_SIZE = 64 * MiB
BIOS_BOOT_SIZE = 1 * MiB
# room for GPT's backup header and table at the end of the disk
GPT_TAIL = 1 * MiB

NAMESPACE = uuid.UUID("3b1c6a52-8f0e-5d0c-9a57-69726f6e666f")   # fixed: ironforge's own

# GRUB's BIOS boot partition: the GUID's bytes on disk spell "Hah!IdontNeedEFI"
BIOS_BOOT_GUID = "21686148-6449-6E6F-744E-656564454649"
GPT_TYPES = {
    "bios_boot": BIOS_BOOT_GUID,
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
}
MBR_TYPES = {"esp": "ef", "linux": "83"}


@dataclass(frozen=True)
class Ids:
    disk: uuid.UUID
    root: uuid.UUID
    esp_volid: str          # FAT volume id, 8 hex digits (shown as XXXX-XXXX)

    @property
    def esp_uuid(self) -> str:
        """How blkid/fstab spell the FAT volume id."""
        return f"{self.esp_volid[:4]}-{self.esp_volid[4:]}".upper()

    @property
    def mbr_id(self) -> str:
        return "0x" + self.disk.hex[:8]

    def part_uuid(self, name: str) -> uuid.UUID:
        return uuid.uuid5(self.disk, name)


def ids_for(recipe_name: str) -> Ids:
    """Stable identifiers for a recipe's disk: same name, same UUIDs, every build."""
    base = uuid.uuid5(NAMESPACE, recipe_name)
    return Ids(disk=uuid.uuid5(base, "disk"), root=uuid.uuid5(base, "root"),
               esp_volid=uuid.uuid5(base, "esp").hex[:8].upper())


@dataclass(frozen=True)
class Partition:
    name: str               # "bios_boot" | "esp" | "root"
    number: int
    start: int              # bytes
    size: int               # bytes
    kind: str               # key of GPT_TYPES / MBR_TYPES

    @property
    def device(self) -> str:
        """The partition's device inside the libguestfs appliance."""
        return f"/dev/sda{self.number}"


@dataclass(frozen=True)
class Layout:
    size: int
    table: str              # "mbr" | "gpt"
    firmware: str           # "bios" | "uefi"
    partitions: tuple[Partition, ...]

    def get(self, name: str) -> Partition | None:
        return next((p for p in self.partitions if p.name == name), None)

    @property
    def root(self) -> Partition:
        p = self.get("root")
        assert p is not None
        return p


def layout(size: int, table: str = "mbr", firmware: str = "bios") -> Layout:
    """Partitions for a disk of ``size`` bytes, 1 MiB aligned.

    BIOS+MBR: root. BIOS+GPT: a 1 MiB BIOS boot partition (GRUB's core.img lives there), root.
    UEFI: a FAT ESP, root (MBR type 0xef or GPT ESP type).
    """
    if table not in ("mbr", "gpt"):
        raise BuildError(f"disk.partition_table {table!r} is not supported", hint='use "mbr" or "gpt"')
    if firmware not in ("bios", "uefi"):
        raise BuildError(f"firmware {firmware!r} is not supported", hint='use "bios" or "uefi"')
    size = size // MiB * MiB
    parts: list[Partition] = []
    pos = 1 * MiB
    if table == "gpt" and firmware == "bios":
        parts.append(Partition("bios_boot", len(parts) + 1, pos, BIOS_BOOT_SIZE, "bios_boot"))
        pos += BIOS_BOOT_SIZE
    if firmware == "uefi":
        parts.append(Partition("esp", len(parts) + 1, pos, ESP_SIZE, "esp"))
        pos += ESP_SIZE
    end = size - (GPT_TAIL if table == "gpt" else 0)
    if end - pos < 256 * MiB:
        raise BuildError(f"disk.size {size} bytes leaves no room for a root filesystem",
                         hint='use disk.size = "2G" or more')
    parts.append(Partition("root", len(parts) + 1, pos, end - pos, "linux"))
    return Layout(size=size, table=table, firmware=firmware, partitions=tuple(parts))


def sfdisk_script(lay: Layout, ids: Ids) -> str:
    lines = [f"label: {'gpt' if lay.table == 'gpt' else 'dos'}", "unit: sectors"]
    lines.append(f"label-id: {str(ids.disk).upper() if lay.table == 'gpt' else ids.mbr_id}")
    for p in lay.partitions:
        fields = [f"start={p.start // SECTOR}", f"size={p.size // SECTOR}"]
        if lay.table == "gpt":
            fields += [f"type={GPT_TYPES[p.kind]}", f"uuid={str(ids.part_uuid(p.name)).upper()}",
                       f'name="{p.name}"']
        else:
            fields.append(f"type={MBR_TYPES[p.kind]}")
            if p.name == "root" and lay.firmware == "bios":
                fields.append("bootable")
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


# Partitioning and mkfs.fat take a second; mke2fs -d, tar and qemu-img convert write the whole
# root filesystem (a few GiB: a minute or two on a slow disk). Limits far above that.
QUICK_TIMEOUT = 120
BULK_TIMEOUT = 3600


def _run(cmd: list[str], what: str, env: dict | None = None, input: str | None = None,
         timeout: float = QUICK_TIMEOUT) -> str:
    proc = hostproc.run(cmd, what=what, timeout=timeout, env=env, input=input, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{tail}",
                         hint="a 'could not allocate' or 'no space' error means disk.size is too "
                              "small for the packages" if "mke2fs" in cmd[0] else None)
    return proc.stdout


def _mke2fs_feature_args() -> list[str]:
    # GRUB 2.06 (Debian 12) cannot read ext4 with metadata_csum_seed or orphan_file; newer
    # e2fsprogs may enable them by default, so turn them off where mke2fs knows them.
    out = hostproc.run([tools.require("mke2fs"), "-V"], what="mke2fs -V", timeout=QUICK_TIMEOUT,
                       check=False).stderr
    m = re.search(r"mke2fs (\d+)\.(\d+)", out)
    version = (int(m.group(1)), int(m.group(2))) if m else (1, 46)
    feats = ["^metadata_csum_seed"]
    if version >= (1, 47):
        feats.append("^orphan_file")
    return ["-O", ",".join(feats)]


def make_ext4(image: Path, part: Partition, tree: Path, fs_uuid: uuid.UUID, label: str = "root",
              epoch: int | None = None) -> None:
    """ext4 populated from ``tree`` (owners, modes, devices, xattrs, hard links kept by -d),
    written inside ``image`` at the partition's offset."""
    env = dict(os.environ)
    if epoch is not None:
        env["E2FSPROGS_FAKE_TIME"] = str(int(epoch))   # superblock times, reproducibly
    cmd = [tools.require("mke2fs"), "-F", "-q", "-t", "ext4", *_mke2fs_feature_args(),
           "-E", f"offset={part.start},hash_seed={fs_uuid}", "-U", str(fs_uuid), "-L", label,
           "-d", str(tree), str(image), f"{part.size // 1024}k"]
    _run(cmd, "mke2fs (root filesystem)", env=env, timeout=BULK_TIMEOUT)


def make_fat(image: Path, part: Partition, volid: str, label: str = "EFI") -> None:
    cmd = [tools.require("mkfs.fat"), "-F", "32", "-s", "1", "-i", volid, "-n", label,
           f"--offset={part.start // SECTOR}", str(image), str(part.size // 1024)]
    _run(cmd, "mkfs.fat (ESP)")


def build_raw(raw: Path, lay: Layout, ids: Ids, tree: Path, epoch: int | None = None) -> None:
    """Partition table, ESP if any, then the root filesystem, into a sparse raw file."""
    with open(raw, "wb") as f:
        f.truncate(lay.size)
    _run([tools.require("sfdisk"), "--no-reread", "--no-tell-kernel", "--wipe", "never", str(raw)],
         "sfdisk", input=sfdisk_script(lay, ids))
    esp = lay.get("esp")
    if esp is not None:
        make_fat(raw, esp, ids.esp_volid)
    make_ext4(raw, lay.root, tree, ids.root, epoch=epoch)


def to_qcow2(raw: Path, qcow2: Path) -> None:
    _run([tools.require("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
         "qemu-img convert", timeout=BULK_TIMEOUT)


def extract(tarball: Path, dest: Path) -> None:
    """Unpack our own bootstrap tarball as root, keeping owners, modes, devices and xattrs."""
    if os.geteuid() != 0:
        raise BuildError("the disk stage extracts the root filesystem as root (owners, device "
                         "nodes) and must run as root", hint="run ironforge as root")
    dest.mkdir(parents=True, exist_ok=True)
    _run(["tar", "--extract", f"--file={tarball}", f"--directory={dest}", "--numeric-owner",
          "--same-owner", "--preserve-permissions", "--xattrs", "--xattrs-include=*"],
         "tar extract of the bootstrap tarball", timeout=BULK_TIMEOUT)
