"""A working copy of a Microsoft ISO whose UEFI El Torito entry boots without "Press any key".

Under UEFI, Microsoft media boot ``efi/microsoft/boot/efisys.bin``, whose loader waits a few
seconds for a key and otherwise falls through: an unattended install would need timed keystrokes.
The same media carry ``efisys_noprompt.bin``, which boots straight into Setup. We point the EFI
entry of the boot catalog at it.

Route chosen: patch the boot catalog entry in a byte copy. Rewriting the whole ISO is not
faithful: xorriso reads and writes ISO 9660/Joliet only, and the Windows file tree lives in UDF
(the ISO 9660 side holds README.TXT), so its output would lose Setup; pycdlib rewrites the UDF
side but has had rewrite bugs with Windows 11 media. The copy differs from the original in the
6 bytes of one 32-byte catalog entry (load RBA, sector count), nothing else. pycdlib (UDF first,
then Joliet, then ISO 9660) only *locates* the no-prompt image's extent.

The ISO is untrusted: the volume descriptors and catalog are parsed with bounds, and the new load
RBA must be a file of the ISO, inside the file, on a sector boundary.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from builder.errors import IronforgeError

SECTOR = 2048
EFI_DIR = ("efi", "microsoft", "boot")
PROMPT_NAME = "efisys.bin"
NOPROMPT_NAME = "efisys_noprompt.bin"
PLATFORM_EFI = 0xEF
PLATFORM_X86 = 0x00

ROUTE_PATCHED = "eltorito-noprompt"    # the copy's EFI entry boots efisys_noprompt.bin
ROUTE_ALREADY = "already-noprompt"     # the media's EFI entry already boots it: no copy
ROUTE_SEND_KEY = "send-key"            # no no-prompt image on the media: press a key over QMP
ROUTE_BIOS = "bios"                    # BIOS: Setup's CD loader only prompts when a disk is bootable


class MediaBootError(IronforgeError):
    """The installer ISO's El Torito data cannot be read or patched (exit 2: wrong media)."""

    exit_code = 2


@dataclass(frozen=True)
class BootEntry:
    platform: int          # 0x00 BIOS, 0xEF UEFI
    offset: int            # byte offset of the 32-byte entry in the ISO file
    bootable: bool
    sector_count: int      # 512-byte virtual sectors (0: "the whole image", as UEFI firmware reads it)
    load_rba: int          # ISO sector (2048 bytes) of the boot image


@dataclass(frozen=True)
class NoPromptResult:
    route: str
    efi_image: str | None = None          # path of the image the EFI entry now boots
    load_rba_before: int | None = None
    load_rba_after: int | None = None
    sector_count_after: int | None = None
    catalog_offset: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _read_at(f, offset: int, size: int) -> bytes:
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise MediaBootError(f"installer ISO truncated: wanted {size} bytes at offset {offset}")
    return data


def boot_catalog(iso: Path) -> tuple[int, list[BootEntry]]:
    """(catalog byte offset, entries) of the El Torito boot catalog of ``iso``."""
    iso = Path(iso)
    size = iso.stat().st_size
    with open(iso, "rb") as f:
        catalog_lba = None
        for n in range(16, 16 + 64):          # volume descriptor set, bounded
            if (n + 1) * SECTOR > size:
                break
            vd = _read_at(f, n * SECTOR, SECTOR)
            if vd[1:6] != b"CD001":
                raise MediaBootError(f"{iso.name}: not an ISO 9660 image (no CD001 at sector {n})")
            if vd[0] == 0 and vd[7:30] == b"EL TORITO SPECIFICATION":
                catalog_lba = struct.unpack_from("<I", vd, 0x47)[0]
            if vd[0] == 255:
                break
        if catalog_lba is None:
            raise MediaBootError(f"{iso.name}: no El Torito boot record: the ISO is not bootable",
                                 hint="use the installer ISO as Microsoft ships it")
        cat_off = catalog_lba * SECTOR
        if cat_off + SECTOR > size:
            raise MediaBootError(f"{iso.name}: boot catalog at sector {catalog_lba} lies beyond the file")
        cat = _read_at(f, cat_off, SECTOR)
    if cat[0] != 1 or cat[30:32] != b"\x55\xaa":
        raise MediaBootError(f"{iso.name}: the El Torito validation entry is malformed")
    if sum(struct.unpack_from("<16H", cat, 0)) & 0xFFFF:
        raise MediaBootError(f"{iso.name}: the El Torito validation entry checksum is wrong")

    def entry(platform: int, pos: int) -> BootEntry:
        indicator, _media, _seg, _stype, _unused, count, rba = struct.unpack_from("<BBHBBHI", cat, pos)
        return BootEntry(platform, cat_off + pos, indicator == 0x88, count, rba)

    entries = [entry(cat[1], 32)]
    pos = 64
    while pos + 32 <= SECTOR:
        header = cat[pos]
        if header not in (0x90, 0x91):
            break
        platform, count = cat[pos + 1], struct.unpack_from("<H", cat, pos + 2)[0]
        pos += 32
        for _ in range(count):
            if pos + 32 > SECTOR:
                raise MediaBootError(f"{iso.name}: boot catalog section runs past its sector")
            entries.append(entry(platform, pos))
            pos += 32          # (extension entries, 0x44, are not used by Microsoft media)
        if header == 0x91:     # final section header
            break
    return cat_off, entries


def _find(iso, names: tuple[str, ...]) -> tuple[str, int, int] | None:
    """(path, byte offset, length) of the file ``names`` (case-insensitive) in ``iso`` (a pycdlib
    handle): UDF first (where Microsoft media keep their tree), then Joliet. Only a file stored in
    one extent qualifies: an El Torito image is one run of sectors."""
    def walk(kind: str, encoding: str):
        path = "/"
        for want in names:
            found = None
            try:
                children = list(iso.list_children(**{kind: path}))
            except Exception:  # noqa: BLE001 - no such directory in this tree
                return None
            for child in children:
                if child is None:
                    continue
                raw = child.file_identifier()
                name = raw.decode(encoding, "replace") if isinstance(raw, bytes) else str(raw)
                if name.lower() == want.lower():
                    found = name
                    break
            if found is None:
                return None
            path = path.rstrip("/") + "/" + found
        try:
            extents = iso.get_file_byte_extents(**{kind: path})
        except Exception:  # noqa: BLE001 - a directory or an empty file of that name
            return None
        return (path, *extents[0]) if len(extents) == 1 else None

    if iso.has_udf():
        hit = walk("udf_path", "utf-8")
        if hit:
            return hit
    if iso.has_joliet():
        return walk("joliet_path", "utf-16-be")
    return None


def locate(iso_path: Path) -> dict[str, tuple[str, int, int] | None]:
    """Where efisys.bin and efisys_noprompt.bin are in the ISO."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(iso_path))
    except Exception as exc:  # noqa: BLE001 - pycdlib raises many kinds on hostile input
        raise MediaBootError(f"{Path(iso_path).name}: pycdlib cannot read the ISO: {exc}") from None
    try:
        return {n: _find(iso, (*EFI_DIR, n)) for n in (PROMPT_NAME, NOPROMPT_NAME)}
    finally:
        iso.close()


def plan(iso_path: Path, firmware: str) -> tuple[NoPromptResult, BootEntry | None, tuple | None]:
    """Which route this media and firmware take, without writing anything."""
    if firmware != "uefi":
        return NoPromptResult(ROUTE_BIOS), None, None
    _cat, entries = boot_catalog(iso_path)
    efi = [e for e in entries if e.platform == PLATFORM_EFI]
    if not efi:
        raise MediaBootError(f"{Path(iso_path).name}: no UEFI El Torito entry: these media cannot boot "
                             "under UEFI", hint='use firmware = "bios" or UEFI-capable media')
    found = locate(iso_path)
    noprompt = found[NOPROMPT_NAME]
    if noprompt is None:
        return NoPromptResult(ROUTE_SEND_KEY, load_rba_before=efi[0].load_rba), efi[0], None
    path, offset, length = noprompt
    if offset % SECTOR:
        raise MediaBootError(f"{Path(iso_path).name}: {path} does not start on a sector boundary")
    rba = offset // SECTOR
    if efi[0].load_rba == rba:
        return NoPromptResult(ROUTE_ALREADY, path, rba, rba, efi[0].sector_count), efi[0], noprompt
    return NoPromptResult(ROUTE_PATCHED, path, efi[0].load_rba, rba, None, efi[0].offset), efi[0], noprompt


def make_noprompt_copy(src: Path, dst: Path, firmware: str = "uefi") -> NoPromptResult:
    """Write ``dst``: ``src`` with its EFI boot entry pointing at efisys_noprompt.bin.

    Nothing is written for the other routes (the caller boots ``src`` itself). ``dst`` appears
    complete or not at all.
    """
    result, entry, noprompt = plan(src, firmware)
    if result.route != ROUTE_PATCHED:
        return result
    _path, _offset, length = noprompt
    # the sector count is in 512-byte units; a count of 0 (as some media carry) stays 0: UEFI firmware
    # then reads the FAT image's own size
    count = 0 if entry.sector_count == 0 else min(0xFFFF, -(-length // 512))
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)          # copy_file_range/sendfile: reflinks where the fs can
        with open(tmp, "r+b") as f:
            f.seek(entry.offset + 6)
            f.write(struct.pack("<HI", count, result.load_rba_after))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return NoPromptResult(ROUTE_PATCHED, result.efi_image, result.load_rba_before, result.load_rba_after,
                          count, entry.offset)
