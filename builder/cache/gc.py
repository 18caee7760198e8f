"""``ironforge cache gc``: remove what no kept output or recent build needs.

Kept, never removed:

- every stage an output names: the ``stages[].key`` (and ``stages[].parts[].key``) of each
  ``manifest.json`` under the output directory (three levels deep, so versioned layouts are seen too);
- the most recent build of each recipe (the engine's ``index/<recipe>/<stage>.json``) when it is
  younger than ``keep_days``;
- every stage used within ``keep_days`` (``used/<key>``, touched by the engine on each use);
- every ancestor in the qcow2 backing chain of a kept stage's files, of the published images
  and of any remaining stage: a layer still read through is never deleted;
- every download a remaining stage names (any sha256 in its meta: pins, fetched files), and
  downloads younger than ``keep_days``.

The rest goes, least recently used first; with ``max_size`` only until the store is under it
(it never touches what is kept, so a store of kept things can stay above it: reported).
Beside a running build this is safe: see builder/cache/lease.py for the locks. A busy stage is
skipped, not waited for; downloads are left alone while any build runs.

A stage is removed by renaming it into ``stages/tmp/<key16>.<pid>.gc-<key>`` under its locks
(atomic: readers see it gone), then deleting that; a gc killed in between leaves a dead-pid
work dir that the next sweep removes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.cache import sweep as sweepmod
from builder.cache.backing import backing_chain
from builder.cache.lease import stage_lock_path, store_lock_path, try_exclusive, use_lock_path, used_stamp
from builder.cache.store import Store
from builder.cache.usage import DownloadUsage, StageUsage, Usage, scan
from builder.errors import UsageError
from builder.host.proc import pid_alive

DEFAULT_KEEP_DAYS = 30
MANIFEST_DEPTH = 3
_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``10G``, ``500M``, ``1.5TiB``, ``123`` (bytes) -> bytes; binary units."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtTbB]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise UsageError(f"--max-size {text!r}: not a size", hint="write e.g. 20G, 500M or a number of bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass
class GcReport:
    dry_run: bool
    keep_days: float
    max_size: int | None
    size_before: int = 0
    size_after: int = 0
    removed_stages: list[dict] = field(default_factory=list)
    removed_downloads: list[dict] = field(default_factory=list)
    kept: dict[str, list[str]] = field(default_factory=dict)      # key -> reasons
    busy: list[dict] = field(default_factory=list)
    downloads_busy: bool = False
    swept: list[str] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return self.size_before - self.size_after

    @property
    def over_size(self) -> bool:
        return self.max_size is not None and self.size_after > self.max_size

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "keep_days": self.keep_days, "max_size": self.max_size,
                "size_before": self.size_before, "size_after": self.size_after, "freed_bytes": self.freed,
                "over_size": self.over_size, "removed_stages": self.removed_stages,
                "removed_downloads": self.removed_downloads,
                "kept_stages": {k: sorted(v) for k, v in sorted(self.kept.items())},
                "busy": self.busy, "downloads_busy": self.downloads_busy, "swept": self.swept}


# -- what is kept --------------------------------------------------------------------------------

def _manifests(output_root: Path) -> list[Path]:
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for e in entries:
            if e.name == "manifest.json" and e.is_file(follow_symlinks=False):
                found.append(Path(e.path))
            elif depth < MANIFEST_DEPTH and e.is_dir(follow_symlinks=False):
                walk(Path(e.path), depth + 1)

    walk(output_root, 1)
    return sorted(found)


def _output_keys(output_root: Path | None) -> tuple[set[str], list[Path]]:
    """Stage keys named by published manifests, and the published qcow2 files beside them."""
    keys: set[str] = set()
    images: list[Path] = []
    if output_root is None:
        return keys, images
    for m in _manifests(output_root):
        try:
            data = json.loads(m.read_text())
        except (OSError, ValueError):
            continue
        for s in data.get("stages", []) if isinstance(data, dict) else []:
            if isinstance(s, dict) and isinstance(s.get("key"), str):
                keys.add(s["key"])
                keys.update(p["key"] for p in s.get("parts") or [] if isinstance(p, dict) and isinstance(p.get("key"), str))
        images += [p for p in m.parent.iterdir() if p.suffix == ".qcow2" and p.is_file()]
    return keys, images


def _index_keys(store: Store, since: float) -> set[str]:
    """Keys of each recipe's most recent build (the engine's index), if it is recent."""
    from builder.recipe import canonical_json
    keys: set[str] = set()
    for f in sorted((store.root / "index").glob("*/*.json")):
        try:
            if f.stat().st_mtime < since:
                continue
            material = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(material, dict):
            key = material.get("key")
            keys.add(key if isinstance(key, str) else hashlib.sha256(canonical_json(material).encode()).hexdigest())
    return keys


def _stage_files(s: StageUsage) -> list[Path]:
    files = {s.dir / n for n in (s.meta or {}).get("files", {}).values() if isinstance(n, str)}
    try:
        files |= {p for p in s.dir.iterdir() if p.is_file() and not p.is_symlink()}
    except OSError:
        pass
    return sorted(files)


class _KeyOf:
    """Which stage a path lies in, if any."""

    def __init__(self, store: Store):
        self.stages = os.path.realpath(store.root / "stages")

    def __call__(self, p: Path) -> str | None:
        real = os.path.realpath(p)
        rel = os.path.relpath(real, self.stages)
        if rel.startswith("..") or os.path.isabs(rel):
            return None
        first = rel.split(os.sep, 1)[0]
        return None if first in ("tmp", ".") else first


def _ancestors(store: Store, usage: Usage) -> dict[str, set[str]]:
    """Stage key -> keys of the stages its files read through (qcow2 backing chains)."""
    key_of = _KeyOf(store)
    out: dict[str, set[str]] = {}
    for s in usage.stages:
        anc: set[str] = set()
        for f in _stage_files(s):
            anc |= {k for k in map(key_of, backing_chain(f)) if k and k != s.key}
        out[s.key] = anc
    return out


def _live_work_ancestors(store: Store) -> set[str]:
    """Stages a build in progress reads through (its work dir's overlays); the lease covers
    them too, this is the second line."""
    key_of = _KeyOf(store)
    keys: set[str] = set()
    for d in sweepmod._children(store.root / "stages" / "tmp"):
        m = sweepmod._WORKDIR.match(d.name)
        if not m or not pid_alive(int(m.group(1))) or ".gc-" in d.name:
            continue
        for f in sweepmod._children(d):
            if f.is_file():
                keys |= {k for k in map(key_of, backing_chain(f)) if k}
    return keys


def kept_stages(store: Store, usage: Usage, output_root: Path | None, keep_days: float,
                now: float) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """key -> why it is kept; and the backing-chain ancestors of every stage."""
    since = now - keep_days * 86400
    present = {s.key for s in usage.stages}
    reasons: dict[str, set[str]] = {}

    def keep(key: str, why: str) -> None:
        if key in present:
            reasons.setdefault(key, set()).add(why)

    out_keys, images = _output_keys(output_root)
    for k in out_keys:
        keep(k, "output")
    for k in _index_keys(store, since):
        keep(k, "recent build")
    for s in usage.stages:
        if s.complete and s.last_used >= since:
            keep(s.key, "recent use")
    key_of = _KeyOf(store)
    for img in images:
        for k in map(key_of, backing_chain(img)):
            if k:
                keep(k, "backs an output")
    for k in _live_work_ancestors(store):
        keep(k, "backs a running build")
    ancestors = _ancestors(store, usage)
    for k in list(reasons):
        for a in ancestors.get(k, ()):
            keep(a, "backs a kept stage")
    return reasons, ancestors


# -- removing ------------------------------------------------------------------------------------

class _Sizer:
    """The store's size as stages and downloads go, counting each inode until its last name
    under the store is gone (the same rule as ``cache du``)."""

    def __init__(self, usage: Usage):
        self.links = dict(usage.inode_links)
        self.bytes = usage.inode_bytes
        self.size = usage.total

    def drop(self, owner: StageUsage | DownloadUsage) -> int:
        freed = 0
        for ino, n in owner.links.items():
            left = self.links.get(ino, 0) - n
            self.links[ino] = left
            if left <= 0 and ino in self.bytes:
                freed += self.bytes[ino]
        self.size -= freed
        return freed


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


def _remove_stage(store: Store, s: StageUsage, dry_run: bool) -> str:
    """'removed', 'busy' (a build holds it) or 'used' (a build used it since the scan)."""
    with try_exclusive(stage_lock_path(store, s.key), use_lock_path(store, s.key)) as ok:
        if not ok:
            return "busy"
        try:
            stamp = os.stat(used_stamp(store, s.key)).st_mtime
        except OSError:
            stamp = None
        if stamp is not None and stamp > s.last_used:
            return "used"
        if dry_run:
            return "removed"
        trash = store.root / "stages" / "tmp" / f"{s.key[:16]}.{os.getpid()}.gc-{s.key}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(s.dir, trash)
        except FileNotFoundError:
            return "removed"
    sweepmod.rmtree(trash)
    used_stamp(store, s.key).unlink(missing_ok=True)
    return "removed"


def _referenced_downloads(stages: list[StageUsage]) -> set[str]:
    refs: set[str] = set()
    for s in stages:
        if s.meta:
            refs |= set(_HEX64.findall(json.dumps({k: s.meta.get(k) for k in ("material", "data", "files")},
                                                  default=str).lower()))
    return refs


def _index_target(d: DownloadUsage) -> str | None:
    """The sha256 a downloads/sha512 or by-url index entry points at."""
    try:
        data = json.loads(d.path.read_text())
    except (OSError, ValueError):
        return None
    v = data.get("sha256") if isinstance(data, dict) else None
    return v.lower() if isinstance(v, str) else None


def gc(store: Store, output_root: Path | None, *, keep_days: float = DEFAULT_KEEP_DAYS,
       max_size: int | None = None, dry_run: bool = False, now: float | None = None) -> GcReport:
    now = time.time() if now is None else now
    report = GcReport(dry_run=dry_run, keep_days=keep_days, max_size=max_size)
    report.swept = sweepmod.sweep(store, output_root, dry_run=dry_run, now=now).removed
    usage = scan(store)
    sizer = _Sizer(usage)
    report.size_before = usage.total
    reasons, ancestors = kept_stages(store, usage, output_root, keep_days, now)
    report.kept = reasons

    def under() -> bool:
        return max_size is not None and sizer.size <= max_size

    since = now - keep_days * 86400
    remaining = {s.key: s for s in usage.stages}
    removed: set[str] = set()
    skipped: set[str] = set()
    candidates = sorted((s for s in usage.stages if s.key not in reasons), key=lambda s: (s.last_used, s.key))

    dependents: dict[str, set[str]] = {}
    for k, anc in ancestors.items():
        for a in anc:
            dependents.setdefault(a, set()).add(k)

    def dependents_left(key: str) -> bool:
        return any(d in remaining for d in dependents.get(key, ()))

    # downloads first: an unreferenced download is re-fetched cheaply; a stage is rebuilt slowly
    def download_pass(lock_ok: bool) -> None:
        if not lock_ok:
            return
        refs = _referenced_downloads(list(remaining.values()))
        dl = [d for d in usage.downloads if d.path.exists() or dry_run]
        doomed: set[str] = set()
        for d in sorted((d for d in dl if d.sha256), key=lambda d: (d.mtime, d.path.name)):
            if under():
                break
            if d.sha256 in refs or d.mtime >= since or str(d.path) in done_dl:
                continue
            doomed.add(d.sha256)
            _drop_download(d)
        for d in dl:
            if d.sha256 is None and d.path.parent.name in ("sha512", "by-url") and str(d.path) not in done_dl:
                target = _index_target(d)
                if target is not None and (target in doomed or target in gone_dl):
                    _drop_download(d)

    done_dl: set[str] = set()
    gone_dl: set[str] = set()

    def _drop_download(d: DownloadUsage) -> None:
        done_dl.add(str(d.path))
        if d.sha256:
            gone_dl.add(d.sha256)
        report.removed_downloads.append({"path": str(d.path), "sha256": d.sha256, "bytes": sizer.drop(d)})
        if not dry_run:
            d.path.unlink(missing_ok=True)

    # the store lock only for the download passes: a build starting meanwhile waits for it
    with try_exclusive(store_lock_path(store)) as store_free:
        report.downloads_busy = not store_free
        download_pass(store_free)
    progress = True
    while progress and not under():
        progress = False
        for s in candidates:
            if s.key in removed or s.key in skipped or dependents_left(s.key):
                continue
            outcome = _remove_stage(store, s, dry_run)
            if outcome == "removed":
                removed.add(s.key)
                del remaining[s.key]
                report.removed_stages.append({"key": s.key, "stage": s.stage, "recipe": s.recipe,
                                              "complete": s.complete, "last_used": _iso(s.last_used),
                                              "bytes": sizer.drop(s)})
            else:
                skipped.add(s.key)
                report.busy.append({"key": s.key, "stage": s.stage, "recipe": s.recipe, "why": outcome})
            progress = True
            break  # re-pick the least recently used removable one
    if removed and not under():  # downloads only the removed stages named
        with try_exclusive(store_lock_path(store)) as store_free:
            report.downloads_busy = report.downloads_busy or not store_free
            download_pass(store_free)
    report.size_after = sizer.size
    return report


def render(report: GcReport) -> str:
    from builder.cache.usage import human
    verb = "would remove" if report.dry_run else "removed"
    lines = []
    for p in report.swept:
        lines.append(f"{verb} leftover {p}")
    for s in report.removed_stages:
        lines.append(f"{verb} {s['stage']:<10} {s['key'][:12]}  {s['recipe']:<24} {human(s['bytes']):>10}  "
                     f"last used {s['last_used']}")
    for d in report.removed_downloads:
        lines.append(f"{verb} download {Path(d['path']).parent.name}/{Path(d['path']).name[:12]}  {human(d['bytes']):>10}")
    for b in report.busy:
        lines.append(f"skipped {b['stage']:<10} {b['key'][:12]}  ({'in use by a running build' if b['why'] == 'busy' else 'used during gc'})")
    if report.downloads_busy:
        lines.append("downloads left alone: a build is running")
    why: dict[str, int] = {}
    for rs in report.kept.values():
        for r in rs:
            why[r] = why.get(r, 0) + 1
    kept = ", ".join(f"{n} {r}" for r, n in sorted(why.items())) or "none"
    lines.append(f"kept {len(report.kept)} stages ({kept})")
    lines.append(f"{'would free' if report.dry_run else 'freed'} {human(report.freed)}: "
                 f"{human(report.size_before)} -> {human(report.size_after)}")
    if report.over_size:
        lines.append(f"still above --max-size {human(report.max_size or 0)}: the rest is kept "
                     "(outputs, recent builds, backing files); lower --keep-days to let more go")
    return "\n".join(lines)
