"""export: flatten the qcow2 overlay chain into the image files the recipe asks for.

Free space is already zero here: every editing stage ends with fstrim on a drive opened with
discard, so discarded clusters read as zeroes and ``qemu-img convert`` leaves them out.
Each format is written by its module in builder.exports; this stage only dispatches.
"""

from __future__ import annotations

from builder import exports, qemu_img
from builder.cache.store import sha256_file
from builder.exports import disks, machine as machinemod
from builder.stage import Artifact, Output, StageContext, StageDef

FORMATS = exports.FORMATS


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    return write(ctx, inputs["previous"].image, machinemod.from_recipe(ctx.recipe))


def write(ctx: StageContext, src, vm: machinemod.Machine) -> Output:
    """Every format of ``outputs.formats`` from ``src`` (qcow2), describing the machine ``vm``
    (a conversion passes its source VM's shape: converters/stages/export.py)."""
    formats = ctx.recipe.get("outputs.formats")
    compress = ctx.recipe.get("outputs.compress")
    vsize = int(qemu_img.info(src)["virtual-size"])
    for fmt in formats:
        exports.check(fmt, vsize)
    files, data = {}, {}
    # qcow2 is always made: it is what verify boots, what `image` means downstream and the disk
    # the libvirt domain XML names
    for fmt in ["qcow2"] + [f for f in formats if f != "qcow2"]:
        spec = FORMATS[fmt]
        if spec.write is None:
            continue
        ctx.log.info("export: writing %s", fmt)
        if fmt == "qcow2":
            name = disks.qcow2(src, "qcow2", vm, ctx.workdir, vm.name, compress=compress)
        else:
            name = spec.write(src, "qcow2", vm, ctx.workdir, vm.name)
        dst = ctx.workdir / name
        files[fmt] = name
        data[fmt] = {"file": name, "bytes": dst.stat().st_size, "virtual_size": vsize,
                     "sha256": sha256_file(dst)}
    files["image"] = files["qcow2"]
    data["published_formats"] = formats
    data["machine"] = vars(vm).copy()
    return Output(files=files, data=data)


STAGE = StageDef(name="export", version=2,
                 reads=("outputs", "firmware", "arch", "os.family", "verify.memory", "verify.cpus"),
                 run=run, tools=("qemu-img", "tar"),
                 doc="Flatten the overlay chain into qcow2 and every format outputs.formats asks for.")
