"""Stage ``import``: a foreign input becomes material of ours.

Disks (bare images, ploop, OVA, VMX, libvirt XML): every header parsed by us, cross-checked by
``qemu-img info -f FMT`` under rlimits, then ``qemu-img convert -f FMT -O qcow2`` into
``disk0.qcow2``, ``disk1.qcow2``… in the source's order (``image`` = the first). Facts: the
SourceVM (name, vCPUs, memory, firmware, disks, NICs with MACs).

A container root filesystem (tarball or folder): re-written by our tar reader into a clean
``rootfs.tar`` (files ``rootfs``), the form the bootstrap method's disk assembly
(builder/linux/diskimage.py) consumes; it has no kernel yet, so the disk is made by a later stage.

Cache key: the source paths and, per file, its sha256 when the recipe gives one (verified), else
its size and mtime (folders: every entry's), so an edited source re-imports.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from builder.errors import ChecksumError, UsageError
from builder.stage import Artifact, Output, StageContext, StageDef
from converters.archive import tarsafe
from converters.copy import to_qcow2
from converters.source import open_source

NAME = "import"
MAX_FINGERPRINT_ENTRIES = 200_000


def sources(ctx: StageContext) -> list[Path]:
    """The CLI's SRC… (options), else the recipe's source.image (path relative to the recipe,
    or url fetched by its sha256 into the download store)."""
    if ctx.options.get("convert_sources"):
        return [Path(s) for s in ctx.options["convert_sources"]]
    r = ctx.recipe
    path, url, sha = (r.get(f"source.image.{k}", None) for k in ("path", "url", "sha256"))
    if path:
        p = Path(path)
        return [p if p.is_absolute() else r.dir / p]
    if url:
        from builder.fetch.http import fetch_url
        return [fetch_url(ctx.store, url, sha256=sha, offline=ctx.offline, progress=ctx.progress)]
    raise UsageError(f"{r.name}: build.method = \"convert\" needs source.image.path or source.image.url")


def _fingerprint(p: Path) -> Any:
    if p.is_dir():
        h = hashlib.sha256()
        n = 0
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            for f in sorted(filenames + dirnames):
                st = os.lstat(os.path.join(dirpath, f))
                h.update(f"{os.path.relpath(os.path.join(dirpath, f), p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                n += 1
                if n > MAX_FINGERPRINT_ENTRIES:
                    break
        return {"tree": h.hexdigest()}
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def pins(ctx: StageContext) -> dict[str, Any]:
    r = ctx.recipe
    if not ctx.options.get("convert_sources") and r.get("source.image.url", None):
        return {"sha256": r.get("source.image.sha256")}
    srcs = sources(ctx)
    # --name lands in the SourceVM facts, so it is part of what this stage made
    return {"sources": [{"path": str(p.absolute()), **_fingerprint(p)} for p in srcs if p.exists()],
            "name": ctx.options.get("convert_name")}


def _verify_sha256(ctx: StageContext, src: Path) -> None:
    want = ctx.recipe.get("source.image.sha256", None)
    if not want or ctx.options.get("convert_sources") or not src.is_file():
        return
    h = hashlib.sha256()
    with open(src, "rb") as f:
        while buf := f.read(1 << 20):
            h.update(buf)
    if h.hexdigest() != want.lower():
        raise ChecksumError(str(src), "sha256", want.lower(), h.hexdigest(),
                            hint="source.image.sha256 does not match the file")


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    srcs = sources(ctx)
    for s in srcs:
        _verify_sha256(ctx, s)
    private = ctx.workdir / ".source"
    private.mkdir(mode=0o700)
    try:
        src = open_source(srcs, private, name=ctx.options.get("convert_name"))
        if src.kind == "rootfs":
            ctx.log.info("re-writing the root filesystem %s through our tar reader", src.rootfs)
            out = ctx.workdir / "rootfs.tar"
            rep = (tarsafe.rootfs_from_dir(src.rootfs, out) if src.rootfs.is_dir()
                   else tarsafe.sanitize_rootfs(src.rootfs, out))
            return Output(files={"rootfs": "rootfs.tar"}, data={
                "kind": "rootfs", "source": [str(p) for p in srcs], "members": rep.members,
                "bytes": rep.bytes, "skipped": rep.skipped,
                "next": "install a kernel, then assemble the disk (builder/linux/diskimage.py)"})
        files: dict[str, str] = {}
        disks = []
        for i, d in enumerate(src.vm.disks):
            dst = ctx.workdir / f"disk{i}.qcow2"
            ctx.log.info("copying %s (%s) into %s", d.path.name, d.format, dst.name)
            to_qcow2(d, dst)
            files["image" if i == 0 else f"disk{i}"] = dst.name
            disks.append({"file": dst.name, "source": str(d.path), "format": d.format, "bus": d.bus,
                          "controller": d.controller, "virtual_size": d.virtual_size})
        return Output(files=files, data={"kind": src.kind, "source": [str(p) for p in srcs],
                                         "vm": src.vm.to_dict(), "disks": disks})
    finally:
        shutil.rmtree(private, ignore_errors=True)


STAGE = StageDef(
    name=NAME, version=1,
    reads=("source.image",),
    run=run, tools=("qemu-img",), pins=pins,
    doc="safe probe of a foreign VM or container, then a copy into qcow2 bases / a clean rootfs.tar")
