"""Stage ``drivers`` (Windows): virtio drivers injected offline into the installed disk.

A qcow2 layer over the previous stage's image; builder.windows.inject edits only that layer in
one libguestfs launch. Artifact: the image, ``drivers.reg`` (every registry change, for people)
and ``drivers.json`` (the injection report, also in the stage data for the manifest).
virtio-win comes from the fetch stage's artifact (an ISO inside it, or a directory whose tree
digest is in fetch's key, so a changed tree re-runs this stage too).
"""

from __future__ import annotations

from pathlib import Path

from builder import qemu_img
from builder.errors import BuildError
from builder.stage import Artifact, Output, StageContext, StageDef
from builder.windows import inject

NAME = "drivers"
IMAGE = "image.qcow2"


def virtio_win_source(fetch: Artifact) -> Path:
    """The virtio-win ISO in the fetch artifact, or the directory it names."""
    vw = fetch.data.get("virtio_win") or {}
    if vw.get("kind") == "iso":
        return fetch.path("virtio-win")
    if vw.get("kind") == "directory" and vw.get("path"):
        return Path(vw["path"])
    raise BuildError("the fetch stage recorded no virtio-win source",
                     hint="set windows.virtio_win.path or .url in the recipe")


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    prev = inputs.get("previous")
    if prev is None or "image" not in prev.files:
        raise BuildError("the Windows drivers stage needs the previous stage's disk image as input")
    if "fetch" not in inputs:
        raise BuildError("the Windows drivers stage needs the fetch stage (virtio-win) as input")
    image = ctx.workdir / IMAGE
    qemu_img.overlay(prev.image, image, what="drivers overlay")
    work = ctx.workdir / ".inject"
    result = inject.inject_image(image, "qcow2", virtio_win_source(inputs["fetch"]), ctx.accel, work)
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    inject.write_record(result, ctx.workdir, stem=NAME)
    report = result.to_dict()
    ctx.log.info("drivers: %s %s: %d files, %d registry changes (%s)%s",
                 result.guest.version.name, result.guest.to_dict()["arch_word"],
                 sum(f.action != "same" for f in result.files), len(result.registry), result.database,
                 "".join(f"\n  warning: {w}" for w in result.warnings))
    return Output(files={"image": IMAGE, "reg": f"{NAME}.reg", "report": f"{NAME}.json"},
                  data={"inject": report})


STAGE = StageDef(
    name=NAME, version=1, reads=("windows.virtio_win",), run=run,
    tools=("qemu-img", "libguestfs"), inputs=("fetch",),
    doc="virtio drivers injected offline (files, SYSTEM/SOFTWARE hives, first-boot install)")
