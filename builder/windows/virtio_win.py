"""Read a virtio-win tree (a directory or the ISO) and pick the drivers for one Windows.

Both shapes are read without mounting anything: a directory is walked with links followed only
while they stay inside the tree; an ISO is read with pycdlib (Rock Ridge names first, since the
virtio-win ISO is made with ``mkisofs -r`` and no Joliet; then Joliet; then plain ISO 9660
names). Entry counts and file sizes are bounded: the source may come from anywhere.

Selection follows current virt-v2v (spec §1.4): path elements compared case-insensitively; the
arch element is ``x86``/``i386`` or ``amd64`` (ARM64 never, the other arch never); the OS element
is the version's virtio-win folder; ``*.pdb``, ``sriov/`` and ``vioprot.*`` are skipped; files are
flattened to lowercase basenames, the last path (in sorted order) winning; with both ``fwcfg``
and ``qemufwcfg`` present, ``qemufwcfg.*`` is dropped.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from builder import arch as archmod
from builder.errors import VirtioWinError
from builder.windows.versions import VERSIONS, WindowsVersion

MAX_ENTRIES = 50_000          # the real ISO has ~3000 files
MAX_FILE_BYTES = 64 << 20     # the largest real driver file is a few MiB
MAX_SELECTED_BYTES = 512 << 20
MAX_DEPTH = 16

DRIVER_FOLDERS = ("balloon", "netkvm", "fwcfg", "pvpanic", "qemufwcfg", "qemupciserial", "qxl",
                  "qxldod", "smbus", "sriov", "viofs", "viogpudo", "vioinput", "viomem", "viorng",
                  "vioscsi", "vioserial", "viosock", "viostor")
ARCH_ELEMENTS = {"x86": archmod.I686, "i386": archmod.I686, "amd64": archmod.X86_64}
NEVER_ARCH = ("arm64", "aarch64")
OS_ELEMENTS = {v.virtio_os for v in VERSIONS}
# vioserial's files are named vioser.*; everything else is named after its folder
_STEM_DRIVER = {"vioser": "vioserial", "blnsvr": "balloon", "netkvmco": "netkvm", "netkvmp": "netkvm"}


@dataclass(frozen=True)
class Entry:
    """One regular file in the source: its path relative to the root (POSIX form), its size."""

    path: str
    size: int


@dataclass(frozen=True)
class DriverFile:
    driver: str                # driver folder, lowercase ("viostor", "netkvm", …)
    source_path: str           # path inside the source, as the source spells it
    target: str                # flattened lowercase basename under Windows\Drivers\VirtIO
    size: int
    _read: Callable[[], bytes] = field(repr=False, compare=False)

    def read(self) -> bytes:
        return self._read()

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.target).suffix


class VirtioWinSource:
    """An open virtio-win tree; ``entries`` lists its regular files, ``read`` returns one."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.kind = ""
        self.entries: list[Entry] = []
        self._iso = None
        self._fp = None
        self._name_kind = ""
        if not self.path.exists():
            raise VirtioWinError(f"virtio-win source {self.path}: no such file or directory",
                                 hint="pass the virtio-win ISO or a directory holding its tree")
        if self.path.is_dir():
            self.kind = "directory"
            self.entries = _walk_dir(self.path)
        elif self.path.is_file():
            self.kind = "iso"
            self._open_iso()
        else:
            raise VirtioWinError(f"virtio-win source {self.path}: not a regular file or directory")

    # -- ISO ---------------------------------------------------------------------------------
    def _open_iso(self) -> None:
        import pycdlib
        from pycdlib.pycdlibexception import PyCdlibException
        self._fp = open(self.path, "rb")
        iso = pycdlib.PyCdlib()
        try:
            iso.open_fp(self._fp)
        except (PyCdlibException, OSError, ValueError, struct.error) as exc:
            self._fp.close()
            raise VirtioWinError(f"virtio-win source {self.path}: not a readable ISO 9660 image ({exc})",
                                 hint="pass the virtio-win ISO (virtio-win-<version>.iso) or its "
                                      "unpacked directory") from None
        self._iso = iso
        self._name_kind = ("rr_path" if iso.has_rock_ridge() else
                           "joliet_path" if iso.has_joliet() else "iso_path")
        try:
            self.entries = self._walk_iso()
        except PyCdlibException as exc:
            self.close()
            raise VirtioWinError(f"virtio-win source {self.path}: unreadable ISO directory ({exc})") from None

    def _record_name(self, rec) -> str:
        if self._name_kind == "rr_path" and rec.rock_ridge is not None:
            return rec.rock_ridge.name().decode("utf-8", "replace")
        ident = rec.file_identifier()
        if self._name_kind == "joliet_path":
            return ident.decode("utf-16_be", "replace")
        name = ident.decode("ascii", "replace")
        name = name.split(";", 1)[0]
        return name[:-1] if name.endswith(".") else name

    def _walk_iso(self) -> list[Entry]:
        out: list[Entry] = []
        stack = [("/", 0)]
        while stack:
            d, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise VirtioWinError(f"virtio-win source {self.path}: directories nest deeper than {MAX_DEPTH}")
            for rec in self._iso.list_children(**{self._name_kind: d}):
                if rec is None or rec.is_dot() or rec.is_dotdot():
                    continue
                name = self._record_name(rec)
                if not name or "/" in name or name in (".", ".."):
                    continue
                full = d.rstrip("/") + "/" + name
                if rec.is_dir():
                    stack.append((full, depth + 1))
                    continue
                if rec.rock_ridge is not None and rec.rock_ridge.is_symlink():
                    continue            # a link could name anything; the real tree has none
                out.append(Entry(full.lstrip("/"), rec.get_data_length()))
                if len(out) > MAX_ENTRIES:
                    raise VirtioWinError(f"virtio-win source {self.path}: more than {MAX_ENTRIES} files")
        out.sort(key=lambda e: e.path)
        return out

    # -- both --------------------------------------------------------------------------------
    def read(self, entry: Entry) -> bytes:
        if entry.size > MAX_FILE_BYTES:
            raise VirtioWinError(f"virtio-win source {self.path}: {entry.path} is {entry.size} bytes, "
                                 f"over the {MAX_FILE_BYTES >> 20} MiB limit for one driver file")
        if self.kind == "directory":
            p = self.path / entry.path
            with open(p, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        else:
            if self._iso is None:
                raise VirtioWinError(f"virtio-win source {self.path}: read after close")
            buf = io.BytesIO()
            self._iso.get_file_from_iso_fp(buf, **{self._name_kind: "/" + entry.path})
            data = buf.getvalue()
        if len(data) != entry.size:
            raise VirtioWinError(f"virtio-win source {self.path}: {entry.path} changed while being read")
        return data

    def offers(self) -> list[str]:
        """'<os>/<arch>' pairs the tree holds drivers for (for error messages)."""
        pairs = set()
        for e in self.entries:
            elems = [x.lower() for x in PurePosixPath(e.path).parts[:-1]]
            oses = [x for x in elems if x in OS_ELEMENTS]
            arches = [x for x in elems if x in ARCH_ELEMENTS or x in NEVER_ARCH]
            if oses and arches:
                pairs.add(f"{oses[-1]}/{arches[-1]}")
        return sorted(pairs)

    def close(self) -> None:
        if self._iso is not None:
            try:
                self._iso.close()
            except Exception:  # noqa: BLE001 - closing a reader must not mask the real error
                pass
            self._iso = None
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def __enter__(self) -> "VirtioWinSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _walk_dir(root: Path) -> list[Entry]:
    """Regular files under ``root``; a link is followed only when it resolves inside ``root``
    (a tree must not make us read /etc/shadow into a guest) and does not lead back into one of
    its own ancestors (a loop). Entry count and depth bound the rest."""
    real_root = root.resolve()
    out: list[Entry] = []
    stack = [(root, 0, frozenset({real_root}))]
    while stack:
        d, depth, ancestors = stack.pop()
        if depth > MAX_DEPTH:
            raise VirtioWinError(f"virtio-win source {root}: directories nest deeper than {MAX_DEPTH}")
        try:
            children = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            raise VirtioWinError(f"virtio-win source {root}: cannot list {d}: {exc.strerror}") from None
        for child in children:
            p = Path(child.path)
            real = p.resolve()
            if real != real_root and real_root not in real.parents:
                continue
            try:
                st = real.stat()
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if real not in ancestors:
                    stack.append((p, depth + 1, ancestors | {real}))
            elif stat.S_ISREG(st.st_mode):
                out.append(Entry(p.relative_to(root).as_posix(), st.st_size))
                if len(out) > MAX_ENTRIES:
                    raise VirtioWinError(f"virtio-win source {root}: more than {MAX_ENTRIES} files")
    out.sort(key=lambda e: e.path)
    return out


def _driver_of(elems: list[str], basename: str) -> str:
    for x in elems:
        if x in DRIVER_FOLDERS:
            return x
    stem = basename.rsplit(".", 1)[0]
    return _STEM_DRIVER.get(stem, stem)


def matches(path: str, version: WindowsVersion, arch: str) -> bool:
    """Does this source path hold a driver file for ``version`` on ``arch``? (spec §1.4)"""
    parts = [x.lower() for x in PurePosixPath(path).parts]
    if not parts:
        return False
    elems, base = parts[:-1], parts[-1]
    if base.endswith(".pdb") or base.startswith("vioprot.") or "sriov" in elems:
        return False
    if any(x in NEVER_ARCH for x in elems):
        return False
    want = archmod.normalise(arch)
    arches = {ARCH_ELEMENTS[x] for x in elems if x in ARCH_ELEMENTS}
    if arches != {want}:
        return False
    return version.virtio_os in elems


def select_entries(src: VirtioWinSource, version: WindowsVersion, arch: str) -> list[tuple[Entry, str, str]]:
    """(entry, driver, target basename) for every file to copy, flattened and deduplicated."""
    chosen: dict[str, tuple[Entry, str]] = {}
    for e in src.entries:           # sorted: the last path with a given basename wins
        if not matches(e.path, version, arch):
            continue
        parts = [x.lower() for x in PurePosixPath(e.path).parts]
        target = parts[-1]
        chosen[target] = (e, _driver_of(parts[:-1], target))
    drivers = {d for _e, d in chosen.values()}
    if "fwcfg" in drivers and "qemufwcfg" in drivers:
        chosen = {t: v for t, v in chosen.items() if not t.startswith("qemufwcfg.")}
    return [(e, d, t) for t, (e, d) in sorted(chosen.items())]


def no_drivers_error(src: VirtioWinSource, version: WindowsVersion, arch: str) -> VirtioWinError:
    offers = src.offers()
    word = archmod.family_word("windows", arch)
    return VirtioWinError(
        f"virtio-win source {src.path} has no driver for {version.name} ({version.osinfo}, folder "
        f"{version.virtio_os!r}) on {word}; it offers: {', '.join(offers) if offers else 'nothing recognisable'}",
        hint="use a virtio-win release that supports this Windows version and arch "
             "(https://github.com/virtio-win/virtio-win-pkg-scripts)")


def select(source: VirtioWinSource | Path | str, version: WindowsVersion, arch: str) -> list[DriverFile]:
    """The driver files for ``version`` on ``arch``; raises VirtioWinError when there are none.

    Given an open VirtioWinSource, the files read lazily from it (keep it open). Given a path,
    the source is opened, the selected bytes read (bounded) and the source closed again.
    """
    if isinstance(source, VirtioWinSource):
        picked = select_entries(source, version, arch)
        if not picked:
            raise no_drivers_error(source, version, arch)
        return [DriverFile(d, e.path, t, e.size, (lambda e=e: source.read(e))) for e, d, t in picked]
    with VirtioWinSource(source) as src:
        picked = select_entries(src, version, arch)
        if not picked:
            raise no_drivers_error(src, version, arch)
        total = sum(e.size for e, _d, _t in picked)
        if total > MAX_SELECTED_BYTES:
            raise VirtioWinError(f"virtio-win source {src.path}: {total} bytes selected, over the "
                                 f"{MAX_SELECTED_BYTES >> 20} MiB limit")
        out = []
        for e, d, t in picked:
            data = src.read(e)
            out.append(DriverFile(d, e.path, t, e.size, (lambda data=data: data)))
        return out
