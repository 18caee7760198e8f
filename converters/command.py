"""``ironforge convert``: the logic behind the command (builder/cli.py prints and maps exits).

The whole conversion is import → inspect → convert → drivers → export → verify. Only ``import``
exists yet: the command runs it (cached like any stage), reports the source VM, then stops with
NotImplementedYet (exit 2) naming the stages still missing — or exits 0 with ``--import-only``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from builder import pipeline
from builder.recipe import Recipe, canonical_json, validate
from builder.errors import RecipeError
from converters.archive import tarsafe
from converters.source import open_source

LATER = tuple(s for s in pipeline.CONVERT_STAGES if s not in pipeline.CONVERT_MODULES) + ("verify",)


def default_name(srcs: list[Path]) -> str:
    first = Path(srcs[0])
    stem = (first.parent.name if first.name == "root.hdd" else first.name).split(".")[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "converted"


def recipe_for(srcs: list[Path], name: str | None, arch: str | None) -> Recipe:
    """An in-memory recipe for the command line's SRC…; os.family is a placeholder until the
    inspect stage finds the guest's own (no stage before it reads os.*)."""
    doc = {"arch": arch or "amd64", "os": {"family": "debian", "release": "12"},
           "build": {"method": "convert"}, "source": {"image": {"path": str(Path(srcs[0]).absolute())}}}
    values, problems = validate(doc, file="<ironforge convert>")
    if problems:
        raise RecipeError(problems)
    return Recipe(name=name or default_name(srcs), path=None, values=values,
                  digest=hashlib.sha256(canonical_json(values).encode()).hexdigest())


def options(srcs: list[Path], name: str | None) -> dict:
    return {"convert_sources": [str(Path(s).absolute()) for s in srcs], "convert_name": name}


def dry_run(srcs: list[Path], name: str | None) -> dict:
    """Every check of the import, nothing copied: an archive is unpacked into a temporary folder
    that is removed before returning; the cache and the output folder are not touched."""
    tmp = Path(tempfile.mkdtemp(prefix="ironforge-convert-dry-"))
    try:
        src = open_source([Path(s) for s in srcs], tmp / "src", name=name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    steps = []
    if src.kind == "rootfs":
        # every member rule checked, the clean tar thrown away
        rep = (tarsafe.rootfs_from_dir(src.rootfs, Path(os.devnull)) if src.rootfs.is_dir()
               else tarsafe.sanitize_rootfs(src.rootfs, Path(os.devnull)))
        steps.append(f"import: re-write the root filesystem {src.rootfs} through our tar reader into rootfs.tar "
                     f"({rep.members} members, {len(rep.skipped)} skipped)")
        steps += [f"  skip {s}" for s in rep.skipped[:20]]
    else:
        for i, d in enumerate(src.vm.disks):
            steps.append(f"import: qemu-img convert -f {d.format} -O qcow2 {d.path.name} -> disk{i}.qcow2 "
                         f"({d.virtual_size} bytes)")
    steps += [f"{s}: not implemented yet" for s in LATER]
    return {"name": name or (src.vm.name if src.vm else default_name(srcs)), "kind": src.kind,
            "vm": src.vm.to_dict() if src.vm else None, "steps": steps, "dry_run": True}


def run_import(engine, srcs: list[Path], name: str | None, arch: str | None) -> dict:
    from builder.cache.lease import Lease
    r = recipe_for(srcs, name, arch)
    stage = pipeline.load_stage("import", r)
    with Lease(engine.store) as lease:
        result = engine.run(r, [stage], lease=lease)
    art = result.artifacts["import"]
    return {"name": r.name, "kind": art.data.get("kind"), "cached": result.steps[0].hit,
            "import": {"key": art.key, "dir": str(art.dir), "files": art.files},
            "vm": art.data.get("vm"), "skipped": art.data.get("skipped", []),
            "not_implemented": list(LATER)}
