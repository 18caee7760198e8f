"""``ironforge convert``: the logic behind the command (builder/cli.py prints and maps exits).

The whole conversion is import → inspect → convert → drivers → export → verify, run and published
like a build (builder/cli.py ``build_one``); ``--import-only`` stops after the import. ``--dry-run``
writes nothing: it checks the sources, inspects the guest read-only (the cached inspect facts when
the cache has them, else one read-only launch on the checked source disks, formats explicit) and
prints the fix-ups the convert stage would make, from the same planner.
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
from builder.errors import RecipeError, UsageError
from converters.archive import tarsafe
from converters.source import open_source

LATER = tuple(s for s in pipeline.CONVERT_STAGES + ("verify",) if s not in pipeline.CONVERT_MODULES)


def default_name(srcs: list[Path]) -> str:
    first = Path(srcs[0])
    stem = (first.parent.name if first.name == "root.hdd" else first.name).split(".")[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "converted"


# a conversion's outputs: the disk and a libvirt domain XML for it (the source VM's shape)
DEFAULT_FORMATS = ("qcow2", "libvirt")


def recipe_for(srcs: list[Path], name: str | None, arch: str | None, firmware: str | None = None,
               formats: list[str] | None = None) -> Recipe:
    """An in-memory recipe for the command line's SRC…; os.family is a placeholder until the
    inspect stage finds the guest's own (no stage before it reads os.*). ``formats``: the
    export formats (``--formats``), each one of builder.exports.FORMATS."""
    fmts = list(dict.fromkeys(formats or DEFAULT_FORMATS))
    from builder.exports import FORMATS
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise UsageError(f"--formats: unknown export format {bad[0]!r}", hint="formats: " + ", ".join(FORMATS))
    doc = {"arch": arch or "amd64", "os": {"family": "debian", "release": "12"},
           "build": {"method": "convert"}, "source": {"image": {"path": str(Path(srcs[0]).absolute())}},
           "outputs": {"formats": fmts}}
    if firmware:
        doc["firmware"] = firmware
    values, problems = validate(doc, file="<ironforge convert>")
    if problems:
        raise RecipeError(problems)
    return Recipe(name=name or default_name(srcs), path=None, values=values,
                  digest=hashlib.sha256(canonical_json(values).encode()).hexdigest())


def recipe_from_inspection(engine, srcs: list[Path], name: str | None, arch: str | None,
                           formats: list[str] | None = None) -> Recipe:
    """Run (or hit) import and inspect — neither reads arch or firmware, so their keys do not
    depend on them — then the recipe with the guest's own arch and firmware, which the verify
    stage boots with (a 32-bit or UEFI guest booted as amd64 BIOS would fail for no fault of its
    own). ``arch`` from the command line wins."""
    from builder import arch as archmod
    from builder.cache.lease import Lease
    r = recipe_for(srcs, name, arch, formats=formats)   # a bad --formats stops here, before any work
    with Lease(engine.store) as lease:
        res = engine.run(r, [pipeline.load_stage(n, r) for n in ("import", "inspect")], lease=lease)
    facts = res.artifacts["inspect"].data
    word = arch
    if not word and facts.get("type") in ("linux", "rootfs") and facts.get("arch") in archmod.ALIASES:
        word = archmod.family_word("debian", facts["arch"])
    fw = facts.get("firmware") if facts.get("firmware") in ("bios", "uefi") else None
    return recipe_for(srcs, name, word, fw, formats)


def options(srcs: list[Path], name: str | None) -> dict:
    return {"convert_sources": [str(Path(s).absolute()) for s in srcs], "convert_name": name}


def cached_facts(engine, srcs: list[Path], name: str | None, arch: str | None) -> tuple[dict, dict] | None:
    """The inspect stage's facts and the import's data when the cache holds both (no launch)."""
    r = recipe_for(srcs, name, arch)
    steps = engine.plan(r, [pipeline.load_stage(n, r) for n in ("import", "inspect")])
    if not all(s.hit for s in steps):
        return None
    import json
    imp, ins = (engine.store.stage_dir(s.key) for s in steps)
    meta = json.loads((imp / "meta.json").read_text())
    return json.loads((ins / "facts.json").read_text()), meta.get("data", {})


def _inspect_source(src, accel, workdir: Path) -> dict:
    """One read-only launch straight on the checked source disks (their formats explicit)."""
    from builder.host.guestfs_session import Drive, session
    from converters.stages.inspect import read
    drives = [Drive(d.path, d.format, readonly=True) for d in src.vm.disks]
    with session(drives, accel, what="convert --dry-run inspection") as g:
        return read(g, workdir, what="convert --dry-run")


def planned_fixups(facts: dict, vm: dict | None) -> list[str]:
    from builder import settings
    from converters.stages.convert import plan_for
    if facts.get("type") == "rootfs":
        from converters import container
        return [f"convert: {s}" for s in container.plan(facts)]
    head = (f"inspect: {facts.get('type')} {facts.get('distro', facts.get('product_name', ''))} "
            f"{facts.get('version', facts.get('version_name', ''))} {facts.get('arch')} "
            f"({facts.get('bits')}-bit, {facts.get('firmware')}, bootloader {facts.get('bootloader', '-')})")
    if facts.get("type") == "windows":
        svcs = facts.get("foreign_services", {})
        return [head, "convert: inject virtio drivers (builder.windows.inject)"] + [
            f"convert: disable {s} ({hv}): Start=4" for s, hv in sorted(svcs.items())]
    p = plan_for(facts, {"vm": vm}, settings.VIRTIO_MODULES)
    return [head] + [f"convert: {s}" for s in p.steps()]


def dry_run(srcs: list[Path], name: str | None, accel=None, engine=None, arch: str | None = None) -> dict:
    """Every check of the import, nothing copied: an archive is unpacked into a temporary folder
    that is removed before returning; the cache and the output folder are not touched. With
    ``accel``, the guest is inspected read-only and the fix-ups planned."""
    tmp = Path(tempfile.mkdtemp(prefix="ironforge-convert-dry-"))
    facts = None
    try:
        src = open_source([Path(s) for s in srcs], tmp / "src", name=name)
        if accel is not None and src.kind != "rootfs":
            got = cached_facts(engine, srcs, name, arch) if engine is not None else None
            facts = got[0] if got else _inspect_source(src, accel, tmp / "inspect")
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
    vm = src.vm.to_dict() if src.vm else None
    if facts is not None:
        steps += planned_fixups(facts, vm)
    elif src.kind == "rootfs":
        steps.append("convert: a container root filesystem into a VM: a disk, the release's kernel, "
                     "initramfs-tools and GRUB (the cached inspect facts give the details)")
    steps += [f"{s}: not implemented yet" for s in LATER]
    out = {"name": name or (src.vm.name if src.vm else default_name(srcs)), "kind": src.kind,
           "vm": vm, "steps": steps, "dry_run": True}
    if facts is not None:
        from converters.stages.inspect import public
        out["facts"] = public(facts)
    return out


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


def published_summary(outdir: Path) -> list[str]:
    """The conversion report's one-line summary from a published output's manifest."""
    import json
    try:
        man = json.loads((outdir / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    return list((man.get("conversion") or {}).get("summary", []))
