"""How much disk the store uses, per stage name and per recipe (``ironforge cache du``).

Sizes are allocated blocks (``st_blocks``), not apparent sizes: a sparse 8 GiB raw disk with
1 GiB written costs 1 GiB. Hard links are counted once: downloads are linked into stages and
stages into outputs, and each inode is charged to the first place the scan meets it
(downloads, then stages, then work dirs, then the rest), so the parts add up to the total.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from builder.cache.lease import used_stamp
from builder.cache.store import META, Store

Inode = tuple[int, int]


@dataclass
class StageUsage:
    key: str
    stage: str
    recipe: str
    dir: Path
    complete: bool
    last_used: float                 # used/<key> stamp, else when it was made
    bytes: int = 0                   # blocks charged to this stage (first owner of each inode)
    inodes: dict[Inode, int] = field(default_factory=dict)   # every inode in it -> allocated bytes
    links: dict[Inode, int] = field(default_factory=dict)    # how many of its names point at each
    meta: dict | None = None


@dataclass
class DownloadUsage:
    path: Path
    sha256: str | None               # for downloads/sha256/<hex>; None for the index files
    mtime: float
    bytes: int = 0
    inodes: dict[Inode, int] = field(default_factory=dict)
    links: dict[Inode, int] = field(default_factory=dict)


@dataclass
class Usage:
    root: Path
    stages: list[StageUsage] = field(default_factory=list)
    downloads: list[DownloadUsage] = field(default_factory=list)
    work_bytes: int = 0              # stages/tmp: builds in progress or leftovers of killed ones
    layout_bytes: dict[str, int] = field(default_factory=dict)   # the stages/ and downloads/ dirs
    other: dict[str, int] = field(default_factory=dict)
    # every inode under the root -> (allocated bytes, names it has under the root)
    inode_bytes: dict[Inode, int] = field(default_factory=dict)
    inode_links: dict[Inode, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.inode_bytes.values())

    @property
    def downloads_bytes(self) -> int:
        return sum(d.bytes for d in self.downloads) + self.layout_bytes.get("downloads", 0)

    def to_dict(self) -> dict:
        by_stage: dict[str, dict[str, int]] = {}
        by_recipe: dict[str, dict[str, int]] = {}
        for s in self.stages:
            for table, name in ((by_stage, s.stage), (by_recipe, s.recipe)):
                row = table.setdefault(name, {"count": 0, "bytes": 0})
                row["count"] += 1
                row["bytes"] += s.bytes
        return {
            "root": str(self.root),
            "total_bytes": self.total,
            "stages": {"count": len(self.stages),
                       "bytes": sum(s.bytes for s in self.stages) + self.layout_bytes.get("stages", 0)},
            "by_stage": dict(sorted(by_stage.items())),
            "by_recipe": dict(sorted(by_recipe.items())),
            "downloads": {"count": sum(1 for d in self.downloads if d.sha256),
                          "bytes": self.downloads_bytes},
            "work_bytes": self.work_bytes,
            "other": dict(sorted(self.other.items())),
        }


def _entries(path: Path, walk: bool = True) -> Iterator[tuple[Inode, int]]:
    """(inode, allocated bytes) of ``path`` and everything under it; symlinks not followed."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    yield (st.st_dev, st.st_ino), st.st_blocks * 512
    if not walk or not stat.S_ISDIR(st.st_mode):
        return
    for dirpath, dirs, files in os.walk(path, onerror=lambda e: None):
        for name in dirs + files:
            try:
                s = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            yield (s.st_dev, s.st_ino), s.st_blocks * 512


class _Scan:
    def __init__(self, usage: Usage):
        self.u = usage

    def charge(self, path: Path, owner, walk: bool = True) -> int:
        """Record ``path``'s inodes (each name once); returns the bytes first seen here."""
        new = 0
        for ino, size in _entries(path, walk):
            if owner is not None:
                owner.inodes[ino] = size
                owner.links[ino] = owner.links.get(ino, 0) + 1
            self.u.inode_links[ino] = self.u.inode_links.get(ino, 0) + 1
            if ino not in self.u.inode_bytes:
                self.u.inode_bytes[ino] = size
                new += size
        return new


def _last_used(store: Store, key: str, meta: dict | None, d: Path) -> float:
    try:
        return os.stat(used_stamp(store, key)).st_mtime
    except OSError:
        pass
    if meta and isinstance(meta.get("finished"), (int, float)):
        return float(meta["finished"])
    try:
        return os.stat(d).st_mtime
    except OSError:
        return 0.0


def _raw_meta(d: Path) -> dict | None:
    try:
        data = json.loads((d / META).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def scan(store: Store) -> Usage:
    usage = Usage(store.root)
    if not store.root.is_dir():
        return usage
    sc = _Scan(usage)
    usage.other["(store dir)"] = sc.charge(store.root, None, walk=False)
    downloads = store.root / "downloads"
    if downloads.is_dir():
        layout = sc.charge(downloads, None, walk=False)
        for sub in sorted(p for p in downloads.iterdir() if p.is_dir()):
            layout += sc.charge(sub, None, walk=False)
            for f in sorted(sub.iterdir()):
                st = _stat(f)
                if st is None:
                    continue
                sha = f.name.lower() if sub.name == "sha256" and _is_hex64(f.name) else None
                d = DownloadUsage(f, sha, st.st_mtime)
                d.bytes = sc.charge(f, d)
                usage.downloads.append(d)
        usage.layout_bytes["downloads"] = layout
    stages = store.root / "stages"
    if stages.is_dir():
        usage.layout_bytes["stages"] = sc.charge(stages, None, walk=False)
        for d in sorted(stages.iterdir()):
            if d.name == "tmp" or not d.is_dir() or d.is_symlink():
                continue
            meta = store.read_meta(d.name)
            raw = meta or _raw_meta(d) or {}
            s = StageUsage(key=d.name, stage=str(raw.get("stage") or "?"),
                           recipe=str(raw.get("recipe") or "?"), dir=d, complete=meta is not None,
                           last_used=_last_used(store, d.name, meta, d), meta=meta)
            s.bytes = sc.charge(d, s)
            usage.stages.append(s)
        if (stages / "tmp").is_dir():
            usage.work_bytes = sc.charge(stages / "tmp", None)
    for top in sorted(store.root.iterdir()):
        if top.name in ("downloads", "stages"):
            continue
        usage.other[top.name] = sc.charge(top, None)
    return usage


def _stat(p: Path):
    try:
        return os.lstat(p)
    except OSError:
        return None


def _is_hex64(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdefABCDEF" for c in name)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def render(usage: Usage) -> str:
    d = usage.to_dict()
    lines = [f"cache: {d['root']}", "", f"{'stage':<16} {'count':>6} {'size':>12}"]
    for name, row in d["by_stage"].items():
        lines.append(f"{name:<16} {row['count']:>6} {human(row['bytes']):>12}")
    lines += ["", f"{'recipe':<28} {'stages':>6} {'size':>12}"]
    for name, row in d["by_recipe"].items():
        lines.append(f"{name:<28} {row['count']:>6} {human(row['bytes']):>12}")
    lines += ["",
              f"{'stages':<28} {d['stages']['count']:>6} {human(d['stages']['bytes']):>12}",
              f"{'downloads':<28} {d['downloads']['count']:>6} {human(d['downloads']['bytes']):>12}",
              f"{'work dirs (stages/tmp)':<28} {'':>6} {human(d['work_bytes']):>12}"]
    for name, size in d["other"].items():
        lines.append(f"{name:<28} {'':>6} {human(size):>12}")
    lines.append(f"{'total':<28} {'':>6} {human(d['total_bytes']):>12}")
    return "\n".join(lines)
