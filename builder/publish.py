"""Publish a finished build into ``output/<name>/``: assemble it in a private work directory,
then swap it in (builder.swap), so a reader sees either the previous complete output or the
new complete one, never a mix, and a kill at any point leaves debris the next publish sweeps.

Published files are read-only and never share a writable inode with the cache: a file is
hard-linked only when its mode protects it (read-only, and we are not root, whom modes do not
stop); otherwise it is cloned (reflink, else a sparse copy). So writing to a published image
cannot change a cache entry that other layers use as their backing file, short of someone
first making a linked file writable on purpose.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any, Callable

from builder import __version__, swap
from builder.clone import clone_file
from builder.engine import RunResult
from builder.exports import FORMATS, beside, machine as machinemod
from builder.host.accel import Accel

# format -> published file name suffix (<name>.<suffix>); one table, in builder.exports
EXTENSIONS = {fmt: f.suffix for fmt, f in FORMATS.items()}


def place(src: Path, dst: Path, *, euid: int | None = None) -> str:
    """Put a cache file at ``dst``: a hard link (instant, no space) only when file modes keep
    everyone from writing through it, else a clone. Returns "link", "reflink" or "copy"."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0 and not os.stat(src).st_mode & 0o222:
        try:
            os.link(src, dst)
            return "link"
        except OSError:
            pass   # another filesystem, or links not allowed: clone instead
    return clone_file(src, dst, mode=0o444)


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
    conversion = arts["convert"].data.get("conversion") if "convert" in arts else None
    if "inspect" in arts:  # a conversion: what the source guest was
        inputs.setdefault("inspect", {})["facts"] = arts["inspect"].data
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
        "stages": [{"name": s.name, "key": s.key, "cached": s.hit, "seconds": s.seconds,
                    # a stage's separately cached parts (export: one per format); cache gc keeps them
                    **({"parts": [{"name": p.name, "key": p.key, "cached": p.hit, "seconds": p.seconds}
                                  for p in s.parts]} if s.parts else {})}
                   for s in result.steps],
        "inputs": inputs,
        "tools": tool_versions,
        # each format under the name publish gives it (the store's part files are named apart
        # from any recipe, so one part serves every recipe over the same image)
        "image": {fmt: (dict(d, file=f"{recipe.name}.{EXTENSIONS[fmt]}") if fmt in EXTENSIONS else d)
                  for fmt, d in (export.data if export else {}).items()
                  if isinstance(d, dict) and fmt != "machine"},
        "machine": (export.data.get("machine") if export else None),
        "guest": guest,
        "verification": verification if verification is not None else {"status": "skipped"},
        **({"conversion": conversion} if conversion is not None else {}),
    }


def _material(a) -> dict:
    try:
        return json.loads((a.dir / "meta.json").read_text()).get("material", {})
    except (OSError, ValueError):
        return {}


def publish(result: RunResult, output_root: Path, accel: Accel, verification: dict | None,
            pause: Callable[[str], None] | None = None, *, final: Path | None = None,
            extra: Callable[[Path], None] | None = None,
            install: Callable[[Path, Path], None] | None = None) -> Path:
    """Publish ``result`` as ``output_root/<name>/``. ``pause(point)`` is called at the named
    points "placed", "assembled" and "swapped" (tests kill the process there).

    Versioned outputs (builder/rebuild/versions.py) pass ``final`` (the version folder),
    ``extra(tmp)`` (writes more files before the work dir is sealed) and ``install(tmp, final)``
    (a rename into a new name instead of the swap)."""
    recipe = result.recipe
    name = recipe.name
    at = pause or (lambda point: None)
    final = final or output_root / name
    output_root.mkdir(parents=True, exist_ok=True)
    swap.sweep(output_root)
    with swap.staged(output_root, name) as tmp:
        export = result.artifacts["export"]
        formats = list(export.data.get("published_formats", ["qcow2"]))
        if "libvirt" in formats and "qcow2" not in formats:
            formats.insert(0, "qcow2")   # the domain XML's disk
        known = {}
        for fmt in formats:
            if FORMATS[fmt].write is None:
                continue
            fname = f"{name}.{EXTENSIONS[fmt]}"
            place(export.path(fmt), tmp / fname)
            if isinstance(export.data.get(fmt), dict) and export.data[fmt].get("sha256"):
                known[fname] = export.data[fmt]["sha256"]
        at("placed")
        drivers = result.artifacts.get("drivers")
        packages = (drivers.data.get("packages") if drivers else None) or []
        if packages:
            lines = [f"{p['name']}\t{p.get('version', '')}\t{p.get('arch', '')}" if isinstance(p, dict) else str(p)
                     for p in packages]
            (tmp / "packages.txt").write_text("\n".join(lines) + "\n")
        verify = result.artifacts.get("verify")
        if verify:
            for logical, fname in verify.files.items():
                place(verify.dir / fname, tmp / f"verify-{fname}" if not fname.startswith("verify") else tmp / fname)
        manifest = build_manifest(result, accel, verification)
        if packages:
            manifest["guest"]["package_count"] = len(packages)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        machine = (machinemod.Machine(**export.data["machine"]) if "machine" in export.data
                   else machinemod.from_recipe(recipe))
        pkg_dicts = [p if isinstance(p, dict) else {"name": str(p)} for p in packages]
        qcow2 = f"{name}.qcow2" if "qcow2" in formats else None
        beside.write(tmp, final, name, machine, formats, pkg_dicts, qcow2_file=qcow2,
                     image_sha256=known.get(qcow2 or ""), known=known)
        if extra is not None:
            extra(tmp)
        def assembled_then(tmp: Path, final: Path) -> None:
            at("assembled")          # sealed and flushed, not yet in place
            (install or swap.replace_dir)(tmp, final)

        swap.install(tmp, final, how=assembled_then)
        at("swapped")
        return final
