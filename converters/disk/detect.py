"""Which format a disk file is, from its bytes (never its name), and what else it would open."""

from __future__ import annotations

import stat
import struct
from pathlib import Path

from converters.disk import parallels, qcow2, vdi, vhd, vhdx, vmdk
from converters.disk.header import DiskHeader, read_at, size_of
from converters.paths import looks_like_protocol
from converters.refuse import refuse

# extensions that promise a structured format: a file so named with no such header is refused
NAMED_FORMATS = {".qcow2": "qcow2", ".qcow": "qcow2", ".img.qcow2": "qcow2", ".vmdk": "vmdk",
                 ".vhd": "vpc", ".vpc": "vpc", ".vhdx": "vhdx", ".vdi": "vdi", ".hds": "parallels",
                 ".qed": "qed"}


def detect(path: Path) -> DiskHeader:
    """The format and every file qemu would open for ``path``; refuses what it must not open."""
    try:
        return _detect(Path(path))
    except (struct.error, IndexError, ValueError, UnicodeError) as exc:
        # a header cut short or with nonsense fields: never a reason to let qemu guess
        refuse(path, f"truncated or malformed disk header ({type(exc).__name__}: {exc})")


def _detect(path: Path) -> DiskHeader:
    if looks_like_protocol(path.name):
        refuse(path, f"file name {path.name!r} looks like a qemu protocol string",
               hint="rename the file (json:, nbd:, http: … names are parsed by qemu as drivers)")
    try:
        st = path.lstat()
    except FileNotFoundError:
        refuse(path, "no such file")
    if stat.S_ISLNK(st.st_mode):
        path = path.resolve()
        st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        refuse(path, "not a regular file (devices, FIFOs and folders are not disk images)")
    if st.st_size == 0:
        refuse(path, "empty file")
    head = read_at(path, 0, 4096)
    magic4 = head[:4]
    if magic4 in (qcow2.MAGIC, qcow2.QED_MAGIC):
        return qcow2.parse(path, head)
    if magic4 in (vmdk.SPARSE_MAGIC, vmdk.COWD_MAGIC):
        return vmdk.parse(path, head)
    if head[:8] == vhdx.MAGIC:
        return vhdx.parse(path, head)
    if head[:8] == vhd.COOKIE:
        return vhd.parse(path, head)
    if vdi.is_vdi(head):
        return vdi.parse(path, head)
    if head[:16] in parallels.MAGICS:
        return parallels.parse(path, head)
    if st.st_size <= vmdk.MAX_DESCRIPTOR and vmdk.looks_like_descriptor(head):
        return vmdk.parse(path, head)
    if st.st_size >= 512 and read_at(path, st.st_size - 512, 8) == vhd.COOKIE:
        return vhd.parse(path, head)
    named = next((fmt for ext, fmt in NAMED_FORMATS.items() if path.name.lower().endswith(ext)), None)
    if named:
        refuse(path, f"the name says {named} but the file has no {named} header (it would be read as raw)",
               hint="if it really is a raw disk, rename it (e.g. .raw or .img)")
    return DiskHeader(path=path, format="raw", virtual_size=size_of(path), files=(path,))
