"""One format, written the one way both a build's export stage (a cached part per format) and
``ironforge export`` write it: the format's writer, then the facts recorded about the file."""

from __future__ import annotations

from pathlib import Path

from builder.exports import FORMATS
from builder.exports.machine import Machine
from builder.exports.sparse_sha256 import sha256_sparse

# a disk format's file does not depend on the VM it is for: named for the disk, not the machine
DISK_BASE = "disk"


def base_name(fmt: str, machine: Machine | None) -> str:
    return machine.name if FORMATS[fmt].machine and machine is not None else DISK_BASE


def write_format(src: Path, src_format: str, fmt: str, machine: Machine | None, workdir: Path, base: str, *,
                 compress: bool = True, compression: str = "zstd") -> tuple[str, dict]:
    """Write ``fmt`` into ``workdir``; its file name and {file, bytes, sha256}. ``machine`` is
    None for the formats that describe no VM (their file must not depend on it)."""
    spec = FORMATS[fmt]
    if fmt == "qcow2":
        name = spec.write(src, src_format, machine, workdir, base, compress=compress, compression=compression)
    else:
        name = spec.write(src, src_format, machine if spec.machine else None, workdir, base)
    dst = workdir / name
    return name, {"file": name, "bytes": dst.stat().st_size, "sha256": sha256_sparse(dst)}
