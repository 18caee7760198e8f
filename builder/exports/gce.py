"""GCE: the disk must be a file named ``disk.raw``, alone, in a gzip'd tar in GNU oldgnu format with
sparse files (Google's image import documentation; specs/exports-rebuilds-scale.md §6). GNU tar
writes exactly that; Python's tarfile cannot write sparse members."""

from __future__ import annotations

from pathlib import Path

from builder import qemu_img
from builder.host import proc
from builder.host.tools import require
from builder.exports.machine import Machine

PACK_TIMEOUT = 4 * 3600.0   # gzip of a large raw disk


def write(src: Path, src_format: str, machine: Machine, workdir: Path, base: str) -> str:
    stage = workdir / f".{base}.gce.d"
    stage.mkdir()
    raw = stage / "disk.raw"
    out = workdir / f"{base}.gce.tar.gz"
    try:
        qemu_img.convert(src, raw, "raw", src_format=src_format, what="export gce: disk.raw")
        # -C: the member is "disk.raw" with no directory; no ACLs, SELinux labels or xattrs by default
        proc.run([require("tar"), "--format=oldgnu", "-Sczf", str(out), "-C", str(stage), "disk.raw"],
                 what="export gce: tar", timeout=PACK_TIMEOUT)
        return out.name
    finally:
        raw.unlink(missing_ok=True)
        stage.rmdir()
