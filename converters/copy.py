"""The copy into a qcow2 base under our control: ``qemu-img convert`` with both formats explicit,
under rlimits and a timeout that grows with the disk."""

from __future__ import annotations

from pathlib import Path

from builder.host.proc import Limits, run
from builder.host.tools import require
from converters.model import SourceDisk

# a copy slower than this is a stalled one (TCG hosts and slow disks included)
MIN_BYTES_PER_SECOND = 5 << 20
ADDRESS_SPACE = 4 << 30


def timeout_for(virtual_size: int) -> float:
    return 300 + virtual_size / MIN_BYTES_PER_SECOND


def to_qcow2(disk: SourceDisk, dst: Path) -> Path:
    size = disk.virtual_size or 0
    run([require("qemu-img"), "convert", "-q", "-f", disk.format, "-O", "qcow2",
         str(Path(disk.path).absolute()), str(dst.absolute())],
        what=f"qemu-img convert {disk.path.name} ({disk.format} -> qcow2)", timeout=timeout_for(size),
        limits=Limits(address_space=ADDRESS_SPACE, file_size=max(size * 2, 1 << 30) + (64 << 20), core_size=0))
    return dst
