"""OVA as zip: the same rules as for tar (plain files only, no absolute names, no '..', caps),
plus a compression-ratio cap against zip bombs, enforced on the bytes actually inflated."""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from converters.archive.caps import OVA, Caps
from converters.archive.tarsafe import TarReport, _mkdirs, member_name
from converters.refuse import refuse

RATIO_FLOOR = 1 << 20   # members smaller than this may compress as well as they like


def is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def extract_ova(path: Path, dest: Path, caps: Caps = OVA) -> TarReport:
    rep = TarReport()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        refuse(path, f"not a readable zip archive: {exc}")
    with zf:
        infos = zf.infolist()
        if len(infos) > caps.max_members:
            refuse(path, f"zip has more than {caps.max_members} members")
        total = 0
        seen: set[str] = set()
        for zi in infos:
            name = member_name(zi.filename, path)
            mode = zi.external_attr >> 16
            if stat.S_ISLNK(mode):
                refuse(path, f"zip member {name!r} is a symlink; an OVA holds only plain files")
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                refuse(path, f"zip member {name!r} is not a plain file")
            if zi.flag_bits & 0x1:
                refuse(path, f"zip member {name!r} is encrypted")
            if zi.file_size > caps.max_member:
                refuse(path, f"zip member {name!r} is {zi.file_size} bytes, beyond {caps.max_member}")
            if zi.file_size > RATIO_FLOOR and zi.file_size > caps.max_ratio * max(zi.compress_size, 1):
                refuse(path, f"zip member {name!r} inflates {zi.file_size // max(zi.compress_size, 1)}x "
                       f"(limit {caps.max_ratio}x): a zip bomb", hint="re-pack the OVA as a tar")
            total += zi.file_size
            if total > caps.max_total:
                refuse(path, f"zip expands beyond {caps.max_total} bytes")
            if not name or zi.is_dir():
                if name:
                    _mkdirs(dest, name)
                continue
            if name in seen:
                refuse(path, f"zip member {name!r} appears twice")
            seen.add(name)
            _mkdirs(dest, str(PurePosixPath(name).parent))
            fd = os.open(dest / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            written = 0
            try:
                with os.fdopen(fd, "wb") as out, zf.open(zi) as src:
                    while buf := src.read(1 << 20):
                        written += len(buf)
                        if written > zi.file_size:   # the central directory lied about the size
                            refuse(path, f"zip member {name!r} inflates beyond its declared size")
                        out.write(buf)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                refuse(path, f"zip member {name!r} is corrupt ({exc})")
            rep.files.append(name)
            rep.bytes += written
            rep.members += 1
    return rep
