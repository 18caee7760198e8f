"""Copy Windows Setup's own logs out of a (failed) install disk: one read-only libguestfs launch.

Where Setup writes them depends on how far it got: ``$WINDOWS.~BT\\Sources\\Panther`` while
Windows PE applies the image (when Setup runs from the CD most of that pass lives on the RAM disk
X: and is lost at power-off), ``Windows\\Panther`` from the specialize pass on, and
``Windows\\Panther\\UnattendGC`` for OOBE and first logon. Every NTFS filesystem on the disk is
searched; each file is size-capped (the disk is ours, but a runaway log must not fill the host).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from builder.host.accel import Accel
from builder.host.guestfs_session import Drive, session

log = logging.getLogger("ironforge.windows.install")

PANTHER_DIRS = ("/$WINDOWS.~BT/Sources/Panther", "/Windows/Panther", "/Windows/Panther/UnattendGC")
LOG_NAMES = ("setupact.log", "setuperr.log")
MAX_LOG = 64 << 20


def _flat(dev: str, path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{dev.rsplit('/', 1)[-1]}{path}").strip("_")


def collect(disk: Path, disk_format: str, dest: Path, accel: Accel) -> list[Path]:
    """Copy every Panther setupact/setuperr log on ``disk`` into ``dest``; the files written.

    Whole ``$WINDOWS.~BT\\Sources\\Panther`` is copied (its other logs name the failing phase); from
    the Windows\\Panther directories only the two Setup logs (the rest are large databases)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with session([Drive(Path(disk), disk_format, readonly=True)], accel,
                 what="windows install: collect Setup logs") as g:
        filesystems = g.list_filesystems()
        for dev, fstype in sorted(filesystems.items()):
            if fstype != "ntfs":
                continue
            try:
                g.mount_ro(dev, "/")
            except Exception as exc:  # noqa: BLE001 - a half-made filesystem: try the others
                log.debug("not mounting %s: %s", dev, exc)
                continue
            try:
                for d in PANTHER_DIRS:
                    try:
                        real = g.case_sensitive_path(d)
                    except Exception:  # noqa: BLE001 - a missing parent directory
                        continue
                    if not g.is_dir(real):
                        continue
                    names = g.ls(real)
                    if not d.startswith("/$WINDOWS"):
                        names = [n for n in names if n.lower() in LOG_NAMES]
                    for name in sorted(names):
                        src = f"{real}/{name}"
                        if not g.is_file(src) or g.filesize(src) > MAX_LOG:
                            continue
                        out = dest / _flat(dev, src)
                        g.download(src, str(out))
                        written.append(out)
            finally:
                g.umount_all()
    return written
