"""Stage ``drivers`` of a conversion: the Linux drivers stage (builder.stages.drivers) for Linux
guests; for Windows guests the virtio drivers were injected by ``convert`` (builder.windows.inject,
in its launch), so this stage only carries that image forward with the injection's facts."""

from __future__ import annotations

from builder import qemu_img
from builder.stage import Artifact, Output, StageContext, StageDef
from builder.stages import drivers as linux_drivers

IMAGE = "image.qcow2"


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    prev = inputs["previous"]
    conv = prev.data.get("conversion") or {}
    if conv.get("os") != "windows":
        return linux_drivers.run(ctx, inputs)
    image = ctx.workdir / IMAGE
    qemu_img.overlay(prev.image, image, what="drivers overlay")
    inj = conv.get("inject") or {}
    return Output(files={"image": IMAGE}, data={"injected_by": "convert", "drivers": inj.get("drivers", []),
                                                "block_drivers": inj.get("block_drivers", []),
                                                "guest": inj.get("guest", {})})


STAGE = StageDef(name="drivers", version=1, reads=linux_drivers.STAGE.reads, run=run,
                 tools=linux_drivers.STAGE.tools,
                 doc="Linux: virtio in every initramfs (builder.stages.drivers); Windows: injected by convert")
