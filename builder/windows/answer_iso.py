"""The answer CD: autounattend.xml at the root, the virtio drivers under both ``$WinPEDriver$``
and ``virtio``, and the completion script, written with pycdlib (spec §4.1).

Windows reads the Joliet names (always on); Rock Ridge carries the same names for Unix tools;
the ISO 9660 names are mangled to what level 3 allows (``$`` is not allowed there). Setup loads
drivers from ``$WinPEDriver$`` on any drive by itself; ``virtio`` is what the answer file's
DriverPaths name.

The image is byte-for-byte reproducible: pycdlib stamps every record with the wall clock, so
it writes under a fixed clock (the same bytes for the same inputs keep cache keys and
published digests stable).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import threading
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from builder.windows import unattend

VOLUME_ID = "IRONFORGE_ANSWER"
WINPE_DRIVER_DIR = "$WinPEDriver$"
# 2020-01-01T00:00:00Z: any constant would do; a plausible date keeps tools from complaining.
FIXED_EPOCH = 1577836800
_MAX_NAME = 30                      # ISO 9660 level 3: name + "." + extension
_CLOCK_LOCK = threading.Lock()


@dataclass(frozen=True)
class CdFile:
    path: str                       # the name Windows sees (Joliet), e.g. "virtio/viostor.inf"
    data: bytes


class _FixedClock:
    """Stands in for the ``time`` module inside pycdlib while it writes: the same instant
    always, in UTC whatever the host's time zone."""

    def time(self) -> float:
        return float(FIXED_EPOCH)

    def localtime(self, secs=None):
        return _time.gmtime(FIXED_EPOCH if secs is None else secs)

    def __getattr__(self, name):
        return getattr(_time, name)


@contextlib.contextmanager
def _fixed_clock():
    import pycdlib.dates
    import pycdlib.headervd
    import pycdlib.inplaceeditor
    import pycdlib.pycdlib
    import pycdlib.udf
    import pycdlib.utils
    mods = [pycdlib.dates, pycdlib.headervd, pycdlib.inplaceeditor, pycdlib.pycdlib, pycdlib.udf,
            pycdlib.utils]
    # The swap is process-wide: the lock keeps two answer ISOs written in parallel builds from
    # restoring each other's clock halfway.
    with _CLOCK_LOCK:
        saved = [m.time for m in mods]
        clock = _FixedClock()
        for m in mods:
            m.time = clock
        try:
            yield
        finally:
            for m, t in zip(mods, saved):
                m.time = t


def _iso_names(names: Iterable[str]) -> dict[str, str]:
    """Level-3 ISO 9660 names for one directory's entries, unique within it."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(names):
        stem, dot, ext = name.upper().rpartition(".")
        if not dot:
            stem, ext = ext, ""
        stem = re.sub(r"[^A-Z0-9_]", "_", stem) or "_"
        ext = re.sub(r"[^A-Z0-9_]", "_", ext)[:8]
        room = _MAX_NAME - len(ext) - 1
        cand, n = stem[:room], 0
        while (cand, ext) in used:
            n += 1
            suffix = f"_{n}"
            cand = stem[:room - len(suffix)] + suffix
        used.add((cand, ext))
        out[name] = cand + ("." + ext if ext else "")
    return out


def _iso_dir_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", name.upper()).strip("_")[:31] or "D"


def layout(xml: bytes, drivers: Iterable[tuple[str, bytes]], script: bytes | None = None) -> list[CdFile]:
    """What goes on the CD: the answer file, each driver file (target basename, bytes) under
    both driver folders, the completion script."""
    files = [CdFile("autounattend.xml", xml)]
    drivers = sorted(drivers)
    for folder in (WINPE_DRIVER_DIR, unattend.CD_DRIVERS_DIR):
        files += [CdFile(f"{folder}/{name}", data) for name, data in drivers]
    files.append(CdFile(f"{unattend.COMPLETION_DIR}/{unattend.COMPLETION_SCRIPT}",
                        script if script is not None else unattend.completion_script()))
    return files


def write(dst: Path, files: list[CdFile]) -> dict[str, str]:
    """Write the ISO to ``dst`` (under a temporary name first, then renamed: never half-written).
    Returns {path: sha256} of what it holds."""
    import pycdlib

    dirs = sorted({f.path.rsplit("/", 1)[0] for f in files if "/" in f.path})
    if any("/" in d for d in dirs):
        raise ValueError("the answer CD has one level of folders")
    dir_iso = {d: _iso_dir_name(d) for d in dirs}
    if len(set(dir_iso.values())) != len(dir_iso):
        raise ValueError(f"folder names collide on ISO 9660: {dir_iso}")
    by_dir: dict[str, list[str]] = {}
    for f in files:
        d, _, name = f.path.rpartition("/")
        by_dir.setdefault(d, []).append(name)
    iso_names = {d: _iso_names(names) for d, names in by_dir.items()}

    tmp = dst.with_name(dst.name + ".part")
    iso = pycdlib.PyCdlib()
    try:
        with _fixed_clock():
            iso.new(interchange_level=3, vol_ident=VOLUME_ID, joliet=3, rock_ridge="1.09")
            for d in dirs:
                iso.add_directory("/" + dir_iso[d], rr_name=d, joliet_path="/" + d)
            for f in sorted(files, key=lambda f: f.path):
                d, _, name = f.path.rpartition("/")
                iso_dir = "/" + dir_iso[d] if d else ""
                iso.add_fp(io.BytesIO(f.data), len(f.data), f"{iso_dir}/{iso_names[d][name]};1",
                           rr_name=name, joliet_path="/" + f.path)
            iso.write(str(tmp))
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        iso.close()
    os.replace(tmp, dst)
    return {f.path: hashlib.sha256(f.data).hexdigest() for f in sorted(files, key=lambda f: f.path)}
