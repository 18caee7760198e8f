"""export: flatten the qcow2 overlay chain into the image files the recipe asks for.

Free space is already zero here: every editing stage ends with fstrim on a drive opened with
discard, so discarded clusters read as zeroes and ``qemu-img convert`` leaves them out.
"""

from __future__ import annotations

from builder import qemu_img
from builder.cache.store import sha256_file
from builder.stage import Artifact, Output, StageContext, StageDef

# format -> (file name, qemu-img output format, -o options)
FORMATS = {
    "qcow2": ("image.qcow2", "qcow2", None),
    "raw": ("image.raw", "raw", None),
    "vmdk": ("image.vmdk", "vmdk", "subformat=streamOptimized"),
}


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    src = inputs["previous"].image
    formats = ctx.recipe.get("outputs.formats")
    compress = ctx.recipe.get("outputs.compress")
    files, data = {}, {}
    for fmt in ["qcow2"] + [f for f in formats if f != "qcow2"]:
        name, qfmt, opts = FORMATS[fmt]
        dst = ctx.workdir / name
        ctx.log.info("export: writing %s%s", fmt, " (compressed)" if compress and fmt == "qcow2" else "")
        qemu_img.convert(src, dst, qfmt, compress=compress and fmt == "qcow2", options=opts,
                         what=f"export {fmt}")
        info = qemu_img.info(dst)
        files[fmt] = name
        data[fmt] = {"file": name, "bytes": dst.stat().st_size, "virtual_size": info["virtual-size"],
                     "sha256": sha256_file(dst)}
    # qcow2 is always made: it is what verify boots and what `image` means downstream
    files["image"] = files["qcow2"]
    data["published_formats"] = formats
    return Output(files=files, data=data)


STAGE = StageDef(name="export", version=1, reads=("outputs",), run=run, tools=("qemu-img",),
                 doc="Flatten the overlay chain into qcow2 (compressed) and any raw/vmdk outputs.")
