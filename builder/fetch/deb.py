"""Read a .deb in Python: an ar archive whose data.tar.* member holds the files.

Members are streamed out of the compressed tar once, hashed while written, and land in the
download store only if they match the digest the caller took from a signed index.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

from builder.cache.store import Store
from builder.errors import FetchError, MissingEnvironment

AR_MAGIC = b"!<arch>\n"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArMember:
    name: str
    offset: int
    size: int


def ar_members(path: Path) -> list[ArMember]:
    """The members of an ar archive (common format as dpkg writes it)."""
    out = []
    with open(path, "rb") as f:
        if f.read(8) != AR_MAGIC:
            raise FetchError(f"{path}: not a Debian package (no ar header)",
                             hint="the download is not a .deb; check the package index")
        while True:
            hdr = f.read(60)
            if not hdr:
                break
            if len(hdr) < 60 or hdr[58:60] != b"`\n":
                raise FetchError(f"{path}: corrupt ar member header", hint="the .deb is damaged")
            name = hdr[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(hdr[48:58].decode("ascii").strip())
            out.append(ArMember(name, f.tell(), size))
            f.seek(size + (size & 1), os.SEEK_CUR)   # members are 2-byte aligned
    return out


class _Slice(io.RawIOBase):
    """A read-only window [offset, offset+size) of an open file."""

    def __init__(self, f, offset: int, size: int):
        self.f, self.pos, self.end = f, offset, offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.end - self.pos)
        if n <= 0:
            return 0
        self.f.seek(self.pos)
        got = self.f.readinto(memoryview(b)[:n])
        self.pos += got
        return got


def _tar_mode(name: str) -> str:
    if name.endswith(".xz"):
        return "r|xz"
    if name.endswith(".gz"):
        return "r|gz"
    if name.endswith(".bz2"):
        return "r|bz2"
    if name == "data.tar":
        return "r|"
    raise FetchError(f"unsupported .deb data member {name}",
                     hint="ironforge reads data.tar.xz/.gz/.bz2/.zst")


def _open_data(f, member: ArMember):
    raw = io.BufferedReader(_Slice(f, member.offset, member.size), buffer_size=_CHUNK)
    if member.name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise MissingEnvironment(
                f"the package's {member.name} is zstd-compressed and the Python module "
                "'zstandard' is not importable",
                hint="apt-get install python3-zstandard (the venv sees system site-packages)") from None
        stream = zstandard.ZstdDecompressor().stream_reader(raw)
        return tarfile.open(fileobj=stream, mode="r|")
    return tarfile.open(fileobj=raw, mode=_tar_mode(member.name))


def _norm(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).removeprefix("./")


def extract_verified(deb: Path, wanted: dict[str, str], store: Store, *, what: str) -> dict[str, Path]:
    """Extract members ``{path inside data.tar: expected sha256}`` into the store.

    A member may be a symlink inside the package; it is followed (one more pass over the tar).
    Each extracted file must match its expected sha256 or nothing of it is kept.
    """
    members = ar_members(deb)
    data = [m for m in members if m.name.startswith("data.tar")]
    if not data:
        raise FetchError(f"{what}: no data.tar member in {deb.name}", hint="the .deb is damaged")
    out: dict[str, Path] = {}
    todo = {_norm(k): (k, v.lower()) for k, v in wanted.items()}
    for _pass in range(3):                       # symlinks: follow at most two hops
        if not todo:
            break
        redirects: dict[str, tuple[str, str]] = {}
        with open(deb, "rb") as f, _open_data(f, data[0]) as tar:
            for info in tar:
                name = _norm(info.name)
                if name not in todo:
                    continue
                orig, sha = todo.pop(name)
                if info.issym() or info.islnk():
                    target = info.linkname if info.islnk() else \
                        posixpath.join(posixpath.dirname(name), info.linkname)
                    redirects[_norm(target)] = (orig, sha)
                    continue
                if not info.isfile():
                    raise FetchError(f"{what}: {orig} in {deb.name} is not a regular file",
                                     hint="the package layout changed; check the package")
                out[orig] = _store_member(tar.extractfile(info), sha, store, what=f"{what}: {orig}")
        todo.update(redirects)
        if not redirects:
            break
    if todo:
        missing = ", ".join(v[0] for v in todo.values())
        raise FetchError(f"{what}: {deb.name} does not contain {missing}",
                         hint="the package layout changed; check the release and arch")
    return out


def _store_member(src, sha256: str, store: Store, *, what: str) -> Path:
    final = store.download_path(sha256)
    if final.is_file():
        return final
    return store.ingest(src, sha256, what=what,
                        hint="the packaged file differs from the signed SHA256SUMS; the mirror is "
                             "inconsistent or tampered with")
