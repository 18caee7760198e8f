"""Publish a finished build into ``output/<name>/``: assemble under a temporary name, rename.

Nothing half-written is ever visible there: a reader sees either the previous complete
output or the new complete one.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from builder import __version__
from builder.cache.store import fsync_dir, fsync_tree
from builder.engine import RunResult
from builder.host.accel import Accel

EXTENSIONS = {"qcow2": "qcow2", "raw": "raw", "vmdk": "vmdk"}


def _place(src: Path, dst: Path) -> None:
    """Hard-link from the cache when possible (instant, no extra space), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_manifest(result: RunResult, accel: Accel, verification: dict | None) -> dict[str, Any]:
    recipe = result.recipe
    arts = result.artifacts
    tool_versions: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    for a in arts.values():
        mat = _material(a)
        tool_versions.update(mat.get("tools", {}))
        if mat.get("pins"):
            inputs[a.stage] = {"pins": mat["pins"]}
    if "fetch" in arts:
        inputs.setdefault("fetch", {})["files"] = arts["fetch"].data
    if "answer" in arts:  # Windows: what the answer CD carries (the media facts are fetch's data)
        inputs.setdefault("answer", {})["facts"] = arts["answer"].data
    export = arts.get("export")
    drivers = arts.get("drivers")
    guest = {k: v for k, v in (drivers.data if drivers else {}).items() if k != "packages"}
    return {
        "ironforge": __version__,
        "recipe": {"name": recipe.name, "digest": recipe.digest,
                   "files": [str(p) for p in recipe.chain], "arch": recipe.arch,
                   "family": recipe.family, "release": recipe.release},
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "accel": {"mode": accel.mode, "reason": accel.reason},
        "stages": [{"name": s.name, "key": s.key, "cached": s.hit, "seconds": s.seconds}
                   for s in result.steps],
        "inputs": inputs,
        "tools": tool_versions,
        "image": {fmt: d for fmt, d in (export.data if export else {}).items() if isinstance(d, dict)},
        "guest": guest,
        "verification": verification if verification is not None else {"status": "skipped"},
    }


def _material(a) -> dict:
    try:
        return json.loads((a.dir / "meta.json").read_text()).get("material", {})
    except (OSError, ValueError):
        return {}


def publish(result: RunResult, output_root: Path, accel: Accel, verification: dict | None) -> Path:
    recipe = result.recipe
    name = recipe.name
    output_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=output_root))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; published images are for everyone on the host
        export = result.artifacts["export"]
        for fmt in export.data.get("published_formats", ["qcow2"]):
            _place(export.path(fmt), tmp / f"{name}.{EXTENSIONS[fmt]}")
        drivers = result.artifacts.get("drivers")
        packages = (drivers.data.get("packages") if drivers else None) or []
        if packages:
            lines = [f"{p['name']}\t{p.get('version', '')}\t{p.get('arch', '')}" if isinstance(p, dict) else str(p)
                     for p in packages]
            (tmp / "packages.txt").write_text("\n".join(lines) + "\n")
        verify = result.artifacts.get("verify")
        if verify:
            for logical, fname in verify.files.items():
                _place(verify.dir / fname, tmp / f"verify-{fname}" if not fname.startswith("verify") else tmp / fname)
        manifest = build_manifest(result, accel, verification)
        if packages:
            manifest["guest"]["package_count"] = len(packages)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        fsync_tree(tmp)
        final = output_root / name
        old = None
        if final.exists():
            old = output_root / f".{name}.old-{os.getpid()}"
            os.rename(final, old)
        os.rename(tmp, final)
        fsync_dir(output_root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
