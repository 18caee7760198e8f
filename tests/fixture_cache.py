"""Test fixtures made once per machine and kept in the shared test cache (tests/shared_cache.py).

Each fixture module keys its folder on the input it derives from (a cached build's key) plus its
own source and this one's, so a warm machine reuses it and an edit to either rebuilds it. A
fixture is built in a private sibling folder and renamed into place whole: a test never sees half
of one, and two test processes racing to build it both end up with a complete one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable


def key(base_key: str, module: str) -> str:
    """The cache folder name for a fixture derived from ``base_key`` by the module ``module``
    (pass its ``__file__``)."""
    h = hashlib.sha256(base_key.encode() + b"\0" + Path(module).read_bytes() + b"\0" + Path(__file__).read_bytes())
    return h.hexdigest()[:20]


def built_once(folder: Path, complete: Path, make: Callable[[Path], None]) -> None:
    """Make ``folder`` unless ``complete`` (a path inside it) already exists: ``make(tmp)`` fills a
    private sibling, which is then renamed to ``folder``."""
    if complete.exists():
        return
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        make(tmp)
        try:
            tmp.rename(folder)
        except OSError:       # another test process made it first: theirs is as good
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def edited_copy(base: Path, dest: Path, edit: Callable, what: str) -> None:
    """``dest``: a standalone qcow2 of ``base`` after ``edit(g)`` in ONE writable libguestfs launch
    (an overlay edited, then flattened: the import refuses backing files, as it must for a foreign
    disk)."""
    from builder import qemu_img
    from builder.host.accel import choose
    from builder.host.guestfs_session import Drive, session
    layer = dest.with_name(f"layer-{dest.name}")
    qemu_img.overlay(base, layer, what=f"{what} overlay")
    with session([Drive(layer, "qcow2", readonly=False)], choose(), what=what) as g:
        edit(g)
    qemu_img.convert(layer, dest, "qcow2", what=f"{what} flatten")
    layer.unlink()


def standin_marker(pkg: str) -> str:
    return f"/usr/share/doc/{pkg}/ironforge-standin"


def standin_deb(dest: Path, pkg: str, version: str) -> Path:
    """A STAND-IN for a foreign hypervisor's guest-tools package under its Debian name (the real
    ones pull in dependencies an offline appliance cannot fetch): installed and later purged by the
    guest's own dpkg, so the converter's removal is real. It carries only standin_marker(pkg)."""
    root = dest / f"pkg-{pkg}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {pkg}\nVersion: {version}+ironforge.standin\nArchitecture: all\n"
        "Maintainer: ironforge tests <tests@ironforge.invalid>\n"
        f"Description: stand-in for {pkg} (conversion tests)\n")
    marker = root / standin_marker(pkg).lstrip("/")
    marker.parent.mkdir(parents=True)
    marker.write_text("stand-in\n")
    deb = dest / f"{pkg}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb
