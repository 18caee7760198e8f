"""customize: hostname, time zone, locale, accounts, packages, files, commands, first boot.

A qcow2 layer over the previous stage's image, edited in exactly one libguestfs launch (the
network is switched on only when packages are to be installed). The guest logic lives in
builder.linux.customize; this module only opens, mounts, applies and trims.

Bootstrap builds run it only when the recipe installs packages or runs commands: otherwise the
disk stage applies the same customizations to the root tree on the host (disk.CUSTOMIZING).
Installer builds always run it (their root tree never exists on the host).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from builder import qemu_img
from builder.host import guest_os, guestfs_session
from builder.host.guestfs_session import Drive
from builder.linux import customize as linux
from builder.linux import imagereport
from builder.stage import Artifact, Output, StageContext, StageDef, recipe_env

# apt-get, dpkg and locale-gen inside the appliance need more than its default memory.
APPLIANCE_MEMSIZE = 1024


def run(ctx: StageContext, inputs: dict[str, Artifact],
        open_session: Callable[..., Any] = guestfs_session.session) -> Output:
    spec = linux.CustomizeSpec.from_recipe(ctx.recipe, recipe_env(ctx))
    ctx.log.debug("customize spec: %r", spec)   # secrets print as Secret(<hidden>, …)
    image = ctx.workdir / "image.qcow2"
    qemu_img.overlay(Path(inputs["previous"].image).resolve(), image, what="customize overlay")
    drive = Drive(image, "qcow2", readonly=False, discard="besteffort")
    with open_session([drive], ctx.accel, what="customize", memsize=APPLIANCE_MEMSIZE,
                      network=spec.needs_network) as g:
        with guest_os.opened(g, what="customize"):
            facts = linux.apply(g, spec)
            # read back what the drivers stage checks, in this launch rather than one of its own
            facts["image_report"] = imagereport.take(g)
    return Output(files={"image": "image.qcow2"}, data=facts)


# No pins: the engine keys secrets and the content of customize.files[].source by tokens
# (builder.private_inputs); a sha256 pin of a source file would be published in the manifest,
# where a small private file could be guessed from it.
STAGE = StageDef(name="customize", version=3, reads=("customize",), run=run,
                 tools=("qemu-img", "libguestfs"),
                 doc="Hostname, time zone, locale, root password, users, packages, files, "
                     "commands and first-boot commands, in one libguestfs launch.")
