"""Stage ``drivers`` (Linux): the recipe's drivers.modules in every kernel's initramfs, proven
from the initramfs listing; plus the guest facts for the manifest (packages, kernels,
os-release).

The listing is usually already there: the stage that last wrote the image (disk or customize)
read it back in its own launch (builder.linux.imagereport). When it shows every module, this
stage proves its point from that listing and adds an empty layer, without a launch of its own
(20-40 s under TCG). Otherwise it launches, adds the modules, rebuilds the initramfs inside the
image, lists it again and fails if a module is still missing.

Works on any Debian-family image (bootstrap or installer pipeline): the guest's filesystems
are found by libguestfs inspection, not from the disk stage's layout.
"""

from __future__ import annotations

import os

from builder import qemu_img, settings
from builder.errors import BuildError
from builder.host import guest_os
from builder.host.guestfs_session import Drive, session
from builder.linux import guestfacts, imagereport, initramfs
from builder.stage import Artifact, Output, StageContext, StageDef

NAME = "drivers"
IMAGE = "image.qcow2"


def modules_for(recipe) -> list[str]:
    if not recipe.get("drivers.virtio", True):
        return []
    return list(recipe.get("drivers.modules", settings.VIRTIO_MODULES))


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    prev = inputs.get("previous")
    if prev is None or "image" not in prev.files:
        raise BuildError("the drivers stage needs the previous stage's disk image as input")
    image = ctx.workdir / IMAGE
    qemu_img.overlay(prev.image, image, what="drivers overlay")   # this stage edits only its layer
    modules = modules_for(ctx.recipe)
    seen = prev.data.get("image_report")
    if imagereport.usable(seen):
        checked = imagereport.check(seen, modules)
        if checked is not None:
            ctx.log.info("drivers: %d modules in the initramfs of %d kernel(s), by the listing the "
                         "%s stage read back from this image; nothing to change", len(modules),
                         len(checked["kernels"]), prev.stage)
            return Output(files={"image": IMAGE}, data={
                "modules": modules, "initramfs": checked, "listing_read_by": prev.stage,
                **seen["facts"]})
        ctx.log.info("drivers: the %s stage's listing lacks a module; launching to add it",
                     prev.stage)
    # two vCPUs: update-grub / update-initramfs under TCG use both host cores (multi-threaded TCG)
    with session([Drive(image, "qcow2", readonly=False)], ctx.accel, what="drivers",
                 smp=min(2, os.cpu_count() or 1)) as g:
        with guest_os.opened(g, what="drivers", want_type="linux",
                             type_hint="the Linux drivers stage only handles Linux guests"):
            report = initramfs.ensure(g, modules, ctx.log)
            facts = guestfacts.collect(g, report["kernels"])
    ctx.log.info("drivers: %d modules checked in %d kernel(s); %d packages installed",
                 len(modules), len(report["kernels"]), facts["package_count"])
    return Output(files={"image": IMAGE}, data={"modules": modules, "initramfs": report,
                                                "listing_read_by": NAME, **facts})


STAGE = StageDef(
    name=NAME, version=2, reads=("drivers",), run=run, tools=("qemu-img", "libguestfs"),
    doc="virtio drivers in every initramfs (checked from the listing); guest package list")
