"""export: flatten the qcow2 overlay chain into the image files the recipe asks for.

Each format is a part of this stage (builder.stage.Part): a cache entry of its own, keyed on the
input image's key and that format's options only, so adding a format to outputs.formats writes
that format alone. This stage's own run then only gathers the parts' files (hard links within the
store) into one artifact, which publish places. Free space is already zero here: every editing
stage ends with fstrim on a drive opened with discard, so discarded clusters read as zeroes and
``qemu-img convert`` leaves them out.
"""

from __future__ import annotations

import os
from typing import Callable

from builder import exports, qemu_img
from builder.cache.store import sha256_file  # noqa: F401  (tests compare digests with it)
from builder.clone import clone_file
from builder.exports import machine as machinemod
from builder.exports.machine import Machine
from builder.exports.write import base_name, write_format
from builder.stage import Artifact, Output, Part, StageContext, StageDef

FORMATS = exports.FORMATS


def formats_made(formats: list[str]) -> list[str]:
    """qcow2 is always made: it is what verify boots, what ``image`` means downstream and the
    disk the libvirt domain XML names; the XML itself is rendered at placement."""
    return [f for f in dict.fromkeys(["qcow2", *formats]) if FORMATS[f].write is not None]


def part_options(fmt: str, vm: Machine, compress: bool, compression: str = "zstd") -> dict:
    """What one format's file depends on besides the input image."""
    opts: dict = {"format": fmt}
    if fmt == "qcow2":
        opts["compress"] = bool(compress)
        if compress:
            opts["compression"] = compression
    if FORMATS[fmt].machine:
        opts["machine"] = vars(vm).copy()
    return opts


MachineOf = Callable[[StageContext, "dict[str, Artifact] | None"], Machine]


def recipe_machine(ctx: StageContext, inputs: dict[str, Artifact] | None) -> Machine:
    """A built image describes the machine its recipe verifies it on."""
    return machinemod.from_recipe(ctx.recipe)


def parts(ctx: StageContext, inputs: dict[str, Artifact] | None,
          machine_of: MachineOf = recipe_machine) -> list[Part]:
    """One part per format. ``machine_of`` says what machine the files describe: the recipe's
    (here) or a converted guest's source VM (converters/stages/export.py)."""
    formats = list(ctx.recipe.get("outputs.formats"))
    for fmt in formats:
        exports.check(fmt, 0)   # unknown names fail in a plan too
    if inputs:
        # every format checked against the real size before any is written
        vsize = int(qemu_img.info(inputs["previous"].image)["virtual-size"])
        for fmt in formats:
            exports.check(fmt, vsize)
    vm = machine_of(ctx, inputs)
    compress = ctx.recipe.get("outputs.compress")
    compression = ctx.recipe.get("outputs.compression", "zstd")
    return [Part(fmt, part_options(fmt, vm, compress, compression), write_part, tools=("qemu-img", "tar"))
            for fmt in formats_made(formats)]


def write_part(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    """One format's entry: its file, and its facts under the format's name."""
    o = ctx.part_options
    fmt = o["format"]
    src = inputs["previous"].image
    vm = Machine(**o["machine"]) if "machine" in o else None
    ctx.log.info("export: writing %s", fmt)
    name, facts = write_format(src, "qcow2", fmt, vm, ctx.workdir, base_name(fmt, vm),
                               compress=o.get("compress", True), compression=o.get("compression", "zstd"))
    facts["virtual_size"] = int(qemu_img.info(src)["virtual-size"])
    return Output(files={fmt: name}, data={fmt: facts})


def _link(src, dst) -> None:
    # store entries are read-only and never rewritten: sharing the inode is safe and free
    try:
        os.link(src, dst)
    except OSError:
        clone_file(src, dst, mode=0o444)


def run(ctx: StageContext, inputs: dict[str, Artifact], machine_of: MachineOf = recipe_machine) -> Output:
    formats = list(ctx.recipe.get("outputs.formats"))
    files, data = {}, {}
    for fmt, art in ctx.parts.items():
        name = art.files[fmt]
        _link(art.path(fmt), ctx.workdir / name)
        files[fmt] = name
        data[fmt] = dict(art.data[fmt], part_key=art.key)
    files["image"] = files["qcow2"]
    data["published_formats"] = formats
    data["machine"] = vars(machine_of(ctx, inputs)).copy()
    return Output(files=files, data=data)


STAGE = StageDef(name="export", version=3,
                 reads=("outputs", "firmware", "arch", "os.family", "verify.memory", "verify.cpus"),
                 run=run, parts=parts, tools=("qemu-img", "tar"),
                 doc="Flatten the overlay chain into qcow2 and every format outputs.formats asks for, "
                     "each format a cache entry of its own.")
