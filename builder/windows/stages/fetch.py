"""fetch (Windows): the user's installer ISO and virtio-win, verified, and what the ISO holds.

Artifact files: "installer" (the ISO, hard-linked from the download store), "virtio-win" when
virtio-win is an ISO. data: installer {url, sha256, size, facts: editions read from
install.wim}, edition (the one the recipe selects, checked against arch and version), version
(the version table's row), virtio_win {kind: iso|directory, path, sha256 | tree_sha256}. A
virtio-win directory stays where it is; its tree digest is in this stage's key and is checked
again here, so later stages read exactly what was keyed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from builder.errors import FetchError
from builder.stage import Artifact, Output, StageContext, StageDef
from builder.windows import inputs
from builder.windows.media import inspect_iso


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)       # same filesystem as the store: no copy of a 5 GB ISO
    except OSError:
        shutil.copyfile(src, dst)


def pins(ctx: StageContext) -> dict[str, Any]:
    media, vw = inputs.require(ctx.recipe)
    return {"installer": inputs.pin(media), "virtio_win": inputs.pin(vw)}


def run(ctx: StageContext, _inputs: dict[str, Artifact]) -> Output:
    media, vw = inputs.require(ctx.recipe)
    iso, iso_sha = inputs.local_file(ctx.store, media, offline=ctx.offline, progress=ctx.progress,
                                     keyed=(ctx.pins.get("installer") or {}).get("sha256"))
    _link(iso, ctx.workdir / "installer.iso")
    facts = inspect_iso(ctx.workdir / "installer.iso")
    edition = inputs.check_media(ctx.recipe, facts)
    ctx.log.info("fetch: %s holds %d edition(s); installing %s", media.path or media.url,
                 len(facts.editions), edition.label())
    files = {"installer": "installer.iso"}
    data: dict[str, Any] = {
        "installer": {"url": media.url or Path(media.path).resolve().as_uri(), "sha256": iso_sha,
                      "size": iso.stat().st_size,
                      "facts": facts.to_dict()},
        "edition": edition.to_dict(),
        "version": inputs.version(ctx.recipe).to_dict(),
    }
    if vw.is_dir:
        digest = inputs.tree_digest(vw.path)
        keyed = (ctx.pins.get("virtio_win") or {}).get("tree_sha256")
        if keyed and keyed != digest:
            raise FetchError(f"virtio-win directory {vw.path} changed while this build ran",
                             hint="run the build again")
        data["virtio_win"] = {"kind": "directory", "path": str(vw.path.resolve()), "tree_sha256": digest}
    else:
        vw_iso, vw_sha = inputs.local_file(ctx.store, vw, offline=ctx.offline, progress=ctx.progress,
                                           keyed=(ctx.pins.get("virtio_win") or {}).get("sha256"))
        _link(vw_iso, ctx.workdir / "virtio-win.iso")
        files["virtio-win"] = "virtio-win.iso"
        data["virtio_win"] = {"kind": "iso", "path": None, "sha256": vw_sha,
                              "url": vw.url or Path(vw.path).resolve().as_uri()}
    return Output(files=files, data=data)


def virtio_win_source(art: Artifact) -> Path:
    """Where a later stage reads virtio-win from: the ISO in this artifact, or the directory."""
    vw = art.data["virtio_win"]
    return art.path("virtio-win") if vw["kind"] == "iso" else Path(vw["path"])


STAGE = StageDef(name="fetch", version=1,
                 reads=("arch", "os.release", "windows.media", "windows.virtio_win", "windows.edition"),
                 run=run, pins=pins, tools=("wiminfo",), doc=__doc__.splitlines()[0])
