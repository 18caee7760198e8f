"""The versioned output layout and publishing into it.

    output/<name>/
      latest -> 20261130T061502Z-3f9a2c1d        (flipped atomically: builder.swap.flip_symlink)
      20261129T061500Z-9b1e77c0/                 (a complete, read-only output, as build publishes)
      20261130T061502Z-3f9a2c1d/                 (… plus changes.json and CHANGES.md)
      <name>.qcow2 -> latest/<name>.qcow2        (one link per file of latest: the flat paths
      manifest.json -> latest/manifest.json       earlier versions of ironforge published keep
      …                                           working, and follow the flip)

A version is the UTC time it was published plus the first 8 hex digits of its last stage's key.
A version folder is assembled as publish's work dir (``.<name>.tmp-<pid>-*``), renamed to its
version name, and only then is ``latest`` flipped: a kill at any point leaves ``latest`` on the
previous complete version, and debris the next publish sweeps. A flat ``output/<name>/`` (what
``ironforge build`` published before) is migrated by the first versioned publish: its files
become the first version (hard links, no copy) in one ``renameat2(RENAME_EXCHANGE)``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from builder import swap
from builder.cache.store import fsync_dir
from builder.clone import clone_file
from builder.engine import RunResult
from builder.errors import BuildError
from builder.host.accel import Accel
from builder.rebuild import changes as changesmod
from builder.rebuild import locks

LATEST = "latest"
VERSION = re.compile(r"^\d{8}T\d{6}Z-[0-9a-z]{1,16}$")
CHANGES_JSON = "changes.json"
CHANGES_MD = "CHANGES.md"


@dataclass(frozen=True)
class Current:
    """What ``output/<name>/`` holds now: the version ``latest`` names, or a flat output."""

    dir: Path
    version: str | None            # None: a flat (unversioned) output
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def stage_keys(self) -> list[str]:
        return [s.get("key") for s in self.manifest.get("stages", []) if isinstance(s, dict)]

    def changes(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / CHANGES_JSON).read_text())
        except (OSError, ValueError):
            return {}


def _manifest(d: Path) -> dict[str, Any]:
    try:
        m = json.loads((d / "manifest.json").read_text())
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError):
        return {}


def is_versioned(folder: Path) -> bool:
    return (folder / LATEST).is_symlink()


def versions(folder: Path) -> list[str]:
    """Version folders, oldest first (the names sort by time)."""
    try:
        return sorted(p.name for p in folder.iterdir()
                      if VERSION.match(p.name) and p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def latest_version(folder: Path) -> str | None:
    try:
        target = os.readlink(folder / LATEST)
    except OSError:
        return None
    return target if VERSION.match(target) and (folder / target).is_dir() else None


def current(folder: Path) -> Current | None:
    """The output a reader sees at ``folder`` now, or None when there is none."""
    if is_versioned(folder):
        v = latest_version(folder)
        return Current(folder / v, v, _manifest(folder / v)) if v else None
    if folder.is_dir() and (folder / "manifest.json").is_file():
        return Current(folder, None, _manifest(folder))
    return None


def version_name(when: datetime.datetime, key: str) -> str:
    return when.strftime("%Y%m%dT%H%M%SZ") + "-" + (re.sub(r"[^0-9a-z]", "", key.lower())[:8] or "unknown")


def _free_name(folder: Path, when: datetime.datetime, key: str) -> str:
    # names sort by time, so a new version must sort after every one there: two publishes within
    # one second (a build right after a rebuild) take the next second, whatever their keys
    existing = versions(folder)
    if existing:
        last = datetime.datetime.strptime(existing[-1][:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=when.tzinfo)
        when = max(when, last + datetime.timedelta(seconds=1))
    for i in range(3600):
        name = version_name(when + datetime.timedelta(seconds=i), key)
        if not os.path.lexists(folder / name):
            return name
    raise BuildError(f"{folder}: no free version name near {version_name(when, key)}")


def _link_or_clone(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        clone_file(Path(src), Path(dst), mode=os.stat(src).st_mode & 0o777)


def _legacy_version(flat: Path) -> str:
    m = _manifest(flat)
    try:
        when = datetime.datetime.fromisoformat(m["built_at"]).astimezone(datetime.timezone.utc)
    except (KeyError, TypeError, ValueError):
        when = datetime.datetime.fromtimestamp(flat.stat().st_mtime, datetime.timezone.utc)
    keys = [s.get("key") for s in m.get("stages", []) if isinstance(s, dict) and s.get("key")]
    return version_name(when, keys[-1] if keys else "legacy")


def refresh_links(folder: Path) -> None:
    """One ``<file> -> latest/<file>`` link per entry of the latest version; links whose file
    the latest version no longer has are removed. Nothing else in ``folder`` is touched."""
    v = latest_version(folder)
    if v is None:
        return
    have = {p.name for p in (folder / v).iterdir()}
    for entry in folder.iterdir():
        if entry.is_symlink() and entry.name != LATEST:
            target = os.readlink(entry)
            if target.startswith(LATEST + "/") and target[len(LATEST) + 1:] not in have:
                entry.unlink(missing_ok=True)
    for n in sorted(have):
        p = folder / n
        if not os.path.lexists(p) and not VERSION.match(n) and n != LATEST and not n.startswith("."):
            os.symlink(f"{LATEST}/{n}", p)


def migrate(output_root: Path, name: str) -> str | None:
    """Turn a flat ``output_root/name`` into the versioned layout (its files become the first
    version); returns that version, or None when there was nothing flat to migrate."""
    flat = output_root / name
    if not flat.is_dir() or is_versioned(flat) or flat.is_symlink():
        return None
    version = _legacy_version(flat)
    with swap.staged(output_root, name) as tmp:
        shutil.copytree(flat, tmp / version, symlinks=True, copy_function=_link_or_clone)
        os.symlink(version, tmp / LATEST)
        refresh_links(tmp)
        # the files are the flat output's own, already read-only: linked, not re-sealed
        swap.install(tmp, flat, seal=False)
    return version


def _remove(folder: Path, version: str) -> None:
    # renamed first to a name carrying our pid: a kill mid-delete leaves debris the sweep takes
    aside = folder / f".{version}.old-{os.getpid()}"
    os.rename(folder / version, aside)
    shutil.rmtree(aside, ignore_errors=True)


def prune(folder: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions; never the one ``latest`` names."""
    vs = versions(folder)
    live = latest_version(folder)
    doomed = [v for v in vs[:max(0, len(vs) - keep)] if v != live]
    for v in doomed:
        _remove(folder, v)
    if doomed:
        fsync_dir(folder)
    return doomed


def _orphans(folder: Path) -> list[str]:
    """Versions newer than ``latest``: renamed into place by a run killed before its flip."""
    live = latest_version(folder)
    if live is None:
        return []
    return [v for v in versions(folder) if v > live]


@dataclass
class Published:
    folder: Path
    version: str
    previous: str | None
    changes: dict[str, Any]
    pruned: list[str]


def stage_inputs(result: RunResult) -> dict[str, dict]:
    """Each stage's cache-key material, as its meta.json records it."""
    out: dict[str, dict] = {}
    for name, art in result.artifacts.items():
        try:
            out[name] = json.loads((art.dir / "meta.json").read_text()).get("material", {})
        except (OSError, ValueError):
            out[name] = {}
    return out


def previous_inputs(prev: Current | None, store) -> dict[str, dict] | None:
    """The previous version's stage inputs: from its changes.json, else (a version published
    before changes.json existed) from the cache entries its manifest names, where still cached."""
    if prev is None:
        return None
    recorded = prev.changes().get("inputs")
    if isinstance(recorded, dict):
        return recorded
    out: dict[str, dict] = {}
    for s in prev.manifest.get("stages", []):
        meta = store.read_meta(s.get("key", "")) if isinstance(s, dict) else None
        if meta and isinstance(meta.get("material"), dict):
            out[s["name"]] = meta["material"]
    return out


def changes_doc(result: RunResult, version: str, prev: Current | None, store,
                built_at: str) -> dict[str, Any]:
    new_inputs = stage_inputs(result)
    drivers = result.artifacts.get("drivers")
    new_pk = changesmod.packages_from((drivers.data.get("packages") if drivers else None) or [])
    old_pk = changesmod.read_packages(prev.dir / "packages.txt") if prev else None
    return {
        "recipe": result.recipe.name, "version": version, "built_at": built_at,
        "previous": (prev.version or "(unversioned output)") if prev else None,
        "stages": [{"name": s.name, "key": s.key, "hit": s.hit, "reason": s.reason} for s in result.steps],
        "changed": changesmod.inputs_changed(previous_inputs(prev, store), new_inputs),
        "packages": changesmod.package_diff(old_pk, new_pk or None) if prev else None,
        "inputs": new_inputs,
    }


def publish_version(result: RunResult, output_root: Path, accel: Accel, verification: dict | None, *,
                    store, keep: int | None = None,
                    pause: Callable[[str], None] | None = None,
                    report: Callable[[Path, RunResult, dict], None] | None = None) -> Published:
    """Publish ``result`` as a new version of ``output_root/<name>/`` and flip ``latest`` to it;
    prune to ``keep`` versions. The caller holds the folder's publish lock. ``pause(point)``
    is also called at "renamed" (version folder in place, ``latest`` not yet flipped) and
    "flipped" (tests kill the process there). ``report(dir, result, changes)`` may write more
    files (an HTML report) into the version while it is still the private work dir, after
    changes.json and before it is sealed read-only."""
    from builder.publish import publish
    name = result.recipe.name
    folder = output_root / name
    at = pause or (lambda point: None)
    if os.path.lexists(folder) and not folder.is_dir():
        raise BuildError(f"{folder} exists and is not a directory",
                         hint="move it away; ironforge publishes a folder per recipe there")
    output_root.mkdir(parents=True, exist_ok=True)
    migrate(output_root, name)
    folder.mkdir(exist_ok=True)
    swap.sweep(folder)
    for v in _orphans(folder):
        _remove(folder, v)
    prev = current(folder)
    now = datetime.datetime.now(datetime.timezone.utc)
    version = _free_name(folder, now, result.steps[-1].key if result.steps else "")
    doc: dict[str, Any] = {}

    def extra(tmp: Path) -> None:
        doc.update(changes_doc(result, version, prev, store, now.isoformat(timespec="seconds")))
        (tmp / CHANGES_JSON).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        (tmp / CHANGES_MD).write_text(changesmod.render_markdown(doc))
        if report is not None:
            report(tmp, result, doc)

    def install(tmp: Path, final: Path) -> None:
        os.rename(tmp, final)      # a new name (we hold the lock, and _free_name checked it)
        fsync_dir(folder)

    publish(result, folder, accel, verification, pause=at, final=folder / version, extra=extra,
            install=install)
    at("renamed")
    swap.flip_symlink(folder / LATEST, version)
    fsync_dir(folder)
    at("flipped")
    refresh_links(folder)
    pruned = prune(folder, keep) if keep else []
    return Published(folder, version, prev.version if prev else None, doc, pruned)


def publish_output(result: RunResult, output_root: Path, accel: Accel, verification: dict | None,
                   store) -> Path:
    """What ``ironforge build`` publishes through: a versioned folder gets a new version (no
    pruning), any other the flat output as before. Under the folder's publish lock either way,
    so a build never replaces a folder a rebuild is publishing into."""
    from builder.publish import publish
    name = result.recipe.name
    with locks.hold(output_root, name, "publish"):
        if is_versioned(output_root / name):
            pub = publish_version(result, output_root, accel, verification, store=store)
            return pub.folder / pub.version
        return publish(result, output_root, accel, verification)
