"""Sweep what killed runs leave behind. Runs at the start of every ``ironforge build`` and in
``ironforge cache gc``; safe beside running builds, because it removes only what a live
process cannot own:

- ``<cache>/stages/tmp/<key>.<pid>.*``: stage work dirs (and gc's renamed-out stages) of dead pids;
- ``<cache>/downloads/tmp/ingest-*.<pid>.*.tmp``: ingest temp files of dead pids;
- ``<cache>/downloads/tmp/*.part`` (+ ``.part.json``) untouched for PART_DAYS: a fresher partial
  is kept so the next fetch resumes it;
- ``<output>/.<name>.tmp-<pid>-*`` and ``<output>/.<name>.old-<pid>``: publish debris of dead pids;
- ``<output>/verify/*/*/.verify-<pid>-*``: ``ironforge verify`` overlays of dead pids;
- ``<cache>/{verify,install}-failures/<recipe>/<time>/``: evidence of failed runs, the newest
  KEEP_FAILURES per recipe are kept.

A name without a pid (written before names carried one) is removed once it is older than
PIDLESS_DAYS, longer than any run lasts. Pids are only meaningful on one host: the store is
meant to be local to the machine that builds (so are its flock locks).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder import swap
from builder.cache.store import Store
from builder.host.proc import pid_alive

PART_DAYS = 7
KEEP_FAILURES = 5
PIDLESS_DAYS = 2
FAILURE_DIRS = ("verify-failures", "install-failures")

_INGEST = re.compile(r"^ingest-[0-9a-f]+\.(\d+)\.\d+\.tmp$")
_WORKDIR = re.compile(r"^[^.]+\.(\d+)\.")
# publish dirs named before they carried a pid (names with one are swap.DEBRIS, tried first)
_PUBLISH_PIDLESS = re.compile(r"^\..+\.tmp-(?:(\d+)-)?")
_VERIFY = re.compile(r"^\.verify-(?:(\d+)-)?")


@dataclass
class SweepReport:
    removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"removed": list(self.removed)}




def rmtree(path: Path) -> None:
    """Delete ``path`` even when its files and directories are read-only (committed stages are)."""
    def make_writable(func, p, _exc):
        parent = os.path.dirname(p)
        try:
            os.chmod(parent, stat.S_IRWXU)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
        except OSError:
            pass
        try:
            func(p)
        except FileNotFoundError:
            pass
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    shutil.rmtree(path, onerror=make_writable)


def _age_days(p: Path, now: float) -> float:
    try:
        return (now - os.lstat(p).st_mtime) / 86400
    except OSError:
        return 0.0


def _dead(match: re.Match | None, p: Path, now: float) -> bool:
    """Owned by a dead pid, or pid-less and old."""
    if match is None:
        return False
    pid = match.group(1)
    if pid is None:
        return _age_days(p, now) > PIDLESS_DAYS
    return not pid_alive(int(pid))


def _remove(p: Path, report: SweepReport, dry_run: bool) -> None:
    report.removed.append(str(p))
    if not dry_run:
        rmtree(p)


def sweep_store(store: Store, *, dry_run: bool = False, now: float | None = None,
                part_days: float = PART_DAYS, keep_failures: int = KEEP_FAILURES,
                report: SweepReport | None = None) -> SweepReport:
    now = time.time() if now is None else now
    report = report or SweepReport()
    root = store.root
    work = root / "stages" / "tmp"
    for p in _children(work):
        if _dead(_WORKDIR.match(p.name), p, now):
            _remove(p, report, dry_run)
    tmp = root / "downloads" / "tmp"
    for p in _children(tmp):
        if _INGEST.match(p.name):
            if _dead(_INGEST.match(p.name), p, now):
                _remove(p, report, dry_run)
        elif p.name.endswith(".part") and _age_days(p, now) > part_days:
            _remove(p, report, dry_run)
            side = p.with_name(p.name + ".json")
            if side.exists():
                _remove(side, report, dry_run)
        elif p.name.endswith(".part.json") and not p.with_name(p.name[:-5]).exists() \
                and _age_days(p, now) > part_days:
            _remove(p, report, dry_run)
    for kind in FAILURE_DIRS:
        for recipe_dir in _children(root / kind):
            runs = sorted((d for d in _children(recipe_dir) if d.is_dir()),
                          key=lambda d: (_mtime(d), d.name), reverse=True)
            for old in runs[keep_failures:]:
                _remove(old, report, dry_run)
    return report


def sweep_outputs(output_root: Path, *, dry_run: bool = False, now: float | None = None,
                  report: SweepReport | None = None) -> SweepReport:
    now = time.time() if now is None else now
    report = report or SweepReport()
    for p in _children(output_root):
        if p.name.startswith("."):
            if _dead(swap.DEBRIS.match(p.name) or _PUBLISH_PIDLESS.match(p.name), p, now):
                _remove(p, report, dry_run)
    for run in _children(output_root / "verify"):
        for target in _children(run):
            for p in _children(target):
                if _dead(_VERIFY.match(p.name), p, now):
                    _remove(p, report, dry_run)
    return report


def sweep(store: Store, output_root: Path | None, *, dry_run: bool = False,
          now: float | None = None) -> SweepReport:
    report = sweep_store(store, dry_run=dry_run, now=now)
    if output_root is not None:
        sweep_outputs(output_root, dry_run=dry_run, now=now, report=report)
    return report


def _children(d: Path) -> list[Path]:
    try:
        return sorted(d.iterdir())
    except OSError:
        return []


def _mtime(p: Path) -> float:
    try:
        return os.lstat(p).st_mtime
    except OSError:
        return 0.0
