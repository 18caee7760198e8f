"""A ploop bundle (``root.hdd/`` with ``DiskDescriptor.xml``): every ``File`` confined to the
bundle, one image only (a snapshot chain is refused), no encryption.

Layout: OpenVZ ploop lib/xml.c. ``File`` may be absolute or ``../``: ploop honours both, we refuse.
"""

from __future__ import annotations

from pathlib import Path

from converters import safexml
from converters.paths import inside
from converters.refuse import refuse

DESCRIPTOR = "DiskDescriptor.xml"
MAX_DESCRIPTOR = 1 << 20


def is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / DESCRIPTOR).is_file()


def image_of(bundle: Path) -> tuple[Path, str]:
    """The bundle's single image and its qemu format ("parallels" or "raw")."""
    desc = bundle / DESCRIPTOR
    if desc.is_symlink():
        refuse(desc, "DiskDescriptor.xml is a symlink")
    root = safexml.parse(desc, "DiskDescriptor.xml", MAX_DESCRIPTOR)
    if root.tag not in ("Parallels_disk_image", "Virtuozzo_disk_image"):
        refuse(desc, f"root element <{root.tag}> is not a ploop disk descriptor")
    params = safexml.child(root, "Disk_Parameters")
    if safexml.child(params, "Encryption") is not None:
        refuse(desc, "encrypted ploop image; ironforge has no key for it")
    images = [img for storage in safexml.children(safexml.child(root, "StorageData") or root, "Storage")
              for img in safexml.children(storage, "Image")]
    files = []
    for img in images:
        name = safexml.text(img, "File")
        if not name:
            refuse(desc, "an Image without a File")
        files.append((inside(bundle, name, desc, "ploop File"), safexml.text(img, "Type", "Compressed")))
    if not files:
        refuse(desc, "DiskDescriptor.xml lists no image")
    shots = safexml.children(safexml.child(root, "Snapshots") or root, "Shot")
    if len(files) > 1 or len(shots) > 1:
        refuse(desc, f"ploop bundle holds a snapshot chain ({len(files)} images, {len(shots)} snapshots)",
               hint="merge the snapshots first: ploop snapshot-merge")
    path, kind = files[0]
    if not path.is_file():
        refuse(desc, f"ploop File {path.name!r} is missing or not a regular file")
    return path, "raw" if (kind or "").lower() == "plain" else "parallels"
