"""Our header parse, then qemu's own reading of the same file with the format forced: the two
must agree (format, size, files opened), else the file is refused."""

from __future__ import annotations

from pathlib import Path

from builder.image.probe import DEFAULT_MAX_VIRTUAL_SIZE, ImageInfo, probe
from converters.disk.detect import detect
from converters.disk.header import DiskHeader
from converters.model import SourceDisk
from converters.refuse import refuse


def cross_check(hdr: DiskHeader, max_virtual_size: int = DEFAULT_MAX_VIRTUAL_SIZE) -> ImageInfo:
    info = probe(hdr.path, fmt=hdr.format, allowed_files=hdr.files[1:], max_virtual_size=max_virtual_size,
                 allow_formats=("raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi", "parallels"))
    if info.format != hdr.format:
        refuse(hdr.path, f"our header parser says {hdr.format}, qemu-img says {info.format}")
    sizes = {hdr.virtual_size, *hdr.alt_sizes} - {None}
    if sizes and info.virtual_size not in sizes:
        refuse(hdr.path, f"our header parser says a virtual size of {hdr.virtual_size} bytes, qemu-img says "
               f"{info.virtual_size}; a header read two ways must not disagree")
    if info.encrypted:
        refuse(hdr.path, "qemu-img reports the image as encrypted")
    return info


def safe_disk(path: Path, *, bus: str | None = None, controller: str | None = None,
              fmt: str | None = None, max_virtual_size: int = DEFAULT_MAX_VIRTUAL_SIZE) -> SourceDisk:
    """A disk we may hand to qemu-img convert: detected, clean, cross-checked.

    ``fmt`` (from a ploop descriptor's Type) must match the detection."""
    hdr = detect(path)
    if fmt and fmt != hdr.format:
        refuse(path, f"described as {fmt} but its header says {hdr.format}")
    info = cross_check(hdr, max_virtual_size)
    return SourceDisk(path=hdr.path, format=hdr.format, bus=bus, controller=controller,
                      virtual_size=info.virtual_size)
