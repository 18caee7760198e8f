"""The rules for tar members from an untrusted archive, and the two things we do with them.

* OVA (``extract_ova``): regular files and folders only, written into our private folder.
  Links, device nodes and FIFOs are refused.
* Container root filesystem (``sanitize_rootfs``): re-written member by member into a clean tar
  for the disk-assembly code. Symlinks stay symlinks (never followed on the host); a hard link
  must name an earlier regular member; device nodes are skipped with a note (a VM's /dev is a
  devtmpfs); nothing may be written through an earlier symlink.

Both: no absolute names, no ``..``, member count, per-member and total size caps.
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from converters.archive import tarread
from converters.archive.caps import OVA, ROOTFS, Caps
from converters.refuse import refuse

_KIND = {tarread.REG: "file", tarread.DIR: "folder", tarread.SYM: "symlink", tarread.LNK: "hard link",
         tarread.CHR: "character device", tarread.BLK: "block device", tarread.FIFO: "FIFO"}


@dataclass
class TarReport:
    files: list[str] = field(default_factory=list)       # regular files kept, in archive order
    members: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)      # "name: why"


def member_name(raw: str, where: Path) -> str:
    """'./a//b/' -> 'a/b'; '' for the archive's root folder. Absolute and '..' are refused."""
    if raw.startswith("/"):
        refuse(where, f"archive member {raw!r} has an absolute name", hint="absolute members would write "
               "anywhere on this host")
    parts = [p for p in PurePosixPath(raw).parts if p not in (".", "")]
    if ".." in parts:
        refuse(where, f"archive member {raw!r} goes up a folder ('..')")
    return "/".join(parts)


def _link_target(name: str, link: str) -> str | None:
    """Where a symlink points, relative to the archive root; None when outside it."""
    if link.startswith("/"):
        return None
    parts: list[str] = list(PurePosixPath(name).parent.parts)
    for p in PurePosixPath(link).parts:
        if p == "..":
            if not parts:
                return None
            parts.pop()
        elif p != ".":
            parts.append(p)
    return "/".join(parts)


class _Rules:
    def __init__(self, where: Path, caps: Caps):
        self.where, self.caps = where, caps
        self.seen: dict[str, bytes] = {}     # name -> latest type
        self.count = 0

    def check(self, e: tarread.Entry) -> str:
        self.count += 1
        if self.count > self.caps.max_members:
            refuse(self.where, f"archive has more than {self.caps.max_members} members")
        name = member_name(e.name, self.where)
        if not name and e.type != tarread.DIR:
            refuse(self.where, f"archive member {e.name!r} names the archive's root but is not a folder")
        if e.size > self.caps.max_member:
            refuse(self.where, f"archive member {name!r} is {e.size} bytes, beyond {self.caps.max_member}")
        parent = PurePosixPath(name).parent
        for i in range(1, len(parent.parts) + 1):
            up = "/".join(parent.parts[:i])
            if self.seen.get(up) == tarread.SYM:
                refuse(self.where, f"archive member {name!r} would be written through the symlink {up!r}")
        if e.type not in _KIND:
            refuse(self.where, f"archive member {name!r} has an unknown type {e.type!r}")
        return name


def extract_ova(path: Path, dest: Path, caps: Caps = OVA) -> TarReport:
    """Regular files of an OVA tar (plain, gz, xz, bz2) into ``dest`` (ours, created empty)."""
    rules, rep = _Rules(path, caps), TarReport()
    dest.mkdir(parents=True, exist_ok=True)
    with tarread.open_stream(path) as stream:
        rd = tarread.TarReader(stream, path, caps.max_total)
        for e in rd.entries():
            name = rules.check(e)
            rep.members += 1
            if e.type in (tarread.SYM, tarread.LNK):
                tgt = _link_target(name, e.linkname) if e.type == tarread.SYM else e.linkname
                out = tgt is None or tgt.startswith("/") or ".." in PurePosixPath(tgt).parts
                refuse(path, f"OVA member {name!r} is a {_KIND[e.type]} to {e.linkname!r}"
                       + (" (outside the archive)" if out else "") + "; an OVA holds only plain files")
            if e.type in (tarread.CHR, tarread.BLK, tarread.FIFO):
                refuse(path, f"OVA member {name!r} is a {_KIND[e.type]}; an OVA holds only plain files")
            if not name:
                continue
            if name in rules.seen:
                refuse(path, f"OVA member {name!r} appears twice")
            rules.seen[name] = e.type
            if e.type == tarread.DIR:
                _mkdirs(dest, name)
                continue
            _mkdirs(dest, str(PurePosixPath(name).parent))
            fd = os.open(dest / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                for buf in rd.read_data():
                    f.write(buf)
            rep.files.append(name)
            rep.bytes += e.size
    return rep


def _mkdirs(dest: Path, rel: str) -> None:
    cur = dest
    for p in PurePosixPath(rel).parts:
        if p in (".", ""):
            continue
        cur = cur / p
        if cur.is_symlink() or (cur.exists() and not cur.is_dir()):
            refuse(dest, f"{rel}: a member is both a file and a folder")
        cur.mkdir(mode=0o700, exist_ok=True)


class _Chunks:
    """A file-like over the reader's current member, for tarfile.addfile."""

    def __init__(self, rd: tarread.TarReader):
        self.it, self.buf = rd.read_data(), b""

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buf) < n):
            nxt = next(self.it, None)
            if nxt is None:
                break
            self.buf += nxt
        out, self.buf = (self.buf, b"") if n < 0 else (self.buf[:n], self.buf[n:])
        return out


_TAR_TYPE = {tarread.REG: tarfile.REGTYPE, tarread.DIR: tarfile.DIRTYPE, tarread.SYM: tarfile.SYMTYPE,
             tarread.LNK: tarfile.LNKTYPE, tarread.FIFO: tarfile.FIFOTYPE}


def sanitize_rootfs(path: Path, out: Path, caps: Caps = ROOTFS) -> TarReport:
    """Re-write a root filesystem tarball into ``out`` (a PAX tar), keeping only safe members."""
    rules, rep = _Rules(path, caps), TarReport()
    with tarread.open_stream(path) as stream, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        rd = tarread.TarReader(stream, path, caps.max_total)
        for e in rd.entries():
            name = rules.check(e)
            rep.members += 1
            if e.type in (tarread.CHR, tarread.BLK):
                rep.skipped.append(f"{name}: {_KIND[e.type]} (a VM's /dev is made by the kernel)")
                continue
            ti = tarfile.TarInfo("./" + name if name else ".")
            ti.type = _TAR_TYPE[e.type]
            ti.mode, ti.uid, ti.gid, ti.mtime = e.mode & 0o7777, e.uid, e.gid, e.mtime
            ti.uname, ti.gname = e.uname, e.gname
            ti.pax_headers = {k: v for k, v in e.pax.items() if k.startswith("SCHILY.xattr.")}
            if e.type == tarread.SYM:
                ti.linkname = e.linkname
            elif e.type == tarread.LNK:
                tgt = member_name(e.linkname, path)
                if rules.seen.get(tgt) != tarread.REG:
                    refuse(path, f"hard link {name!r} -> {e.linkname!r} does not name an earlier file of the "
                           "archive (a hard link out would read a host file)")
                ti.linkname = "./" + tgt
            if e.type == tarread.REG:
                ti.size = e.size
                dst.addfile(ti, _Chunks(rd))
                rep.bytes += e.size
                rep.files.append(name)
            else:
                dst.addfile(ti)
            if name:
                rules.seen[name] = e.type
    return rep


def rootfs_from_dir(src: Path, out: Path, caps: Caps = ROOTFS) -> TarReport:
    """A root filesystem folder into a clean tar: walked without following symlinks, on one
    filesystem; device nodes and sockets skipped with a note."""
    rep = TarReport()
    root_dev = os.lstat(src).st_dev
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        stack = [""]
        while stack:
            rel = stack.pop()
            p = src / rel if rel else src
            st = os.lstat(p)
            rep.members += 1
            if rep.members > caps.max_members:
                refuse(src, f"folder has more than {caps.max_members} entries")
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                rep.skipped.append(f"{rel}: device node or socket (a VM's /dev is made by the kernel)")
                continue
            ti = dst.gettarinfo(str(p), arcname="./" + rel if rel else ".")
            if stat.S_ISREG(st.st_mode):
                if st.st_size > caps.max_member:
                    refuse(src, f"{rel}: {st.st_size} bytes is beyond {caps.max_member}")
                rep.bytes += st.st_size
                if rep.bytes > caps.max_total:
                    refuse(src, f"folder holds more than {caps.max_total} bytes")
                if ti.type == tarfile.LNKTYPE:
                    dst.addfile(ti)
                else:
                    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    with os.fdopen(fd, "rb") as f:
                        dst.addfile(ti, f)
                rep.files.append(rel)
            else:
                dst.addfile(ti)
            if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                stack.extend(sorted((f"{rel}/{n}" if rel else n for n in os.listdir(p)), reverse=True))
    return rep
