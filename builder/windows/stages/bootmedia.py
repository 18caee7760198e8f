"""Stage ``bootmedia``: the installer ISO as the install run boots it, without "Press any key".

Under UEFI this is a copy of the media whose El Torito EFI entry boots
``efi/microsoft/boot/efisys_noprompt.bin`` (builder.windows.noprompt); it is cached like any
artifact, keyed on the fetch stage's key and so on the media's sha256. Under BIOS, or when the
media already boot without a prompt, or carry no no-prompt image (the install stage then falls
back to pressing a key over QMP), no copy is made and the install boots the fetched ISO.

Artifact: ``iso`` (only when a copy was made); data: the route taken and the catalog change.
"""

from __future__ import annotations

from pathlib import Path

from builder.errors import BuildError
from builder.stage import Artifact, Output, StageContext, StageDef
from builder.windows import noprompt

ISO = "installer-noprompt.iso"


def media_iso(fetched: Artifact) -> Path:
    """The Windows installer ISO among the fetch stage's files: the entry named ``windows_iso``
    (or ``media``/``installer``), else the only ``.iso`` that is not virtio-win."""
    for key in ("windows_iso", "media", "installer"):
        if key in fetched.files:
            return fetched.path(key)
    isos = [k for k, f in fetched.files.items()
            if f.lower().endswith(".iso") and "virtio" not in (k + f).lower()]
    if len(isos) == 1:
        return fetched.path(isos[0])
    raise BuildError("cannot tell which fetched file is the Windows installer ISO "
                     f"(fetch artifact files: {', '.join(sorted(fetched.files)) or 'none'})",
                     hint="name its source windows_iso in the recipe's windows.media")


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    src = media_iso(inputs["fetch"])
    firmware = ctx.recipe.get("firmware", "bios")
    res = noprompt.make_noprompt_copy(src, ctx.workdir / ISO, firmware)
    ctx.log.info("bootmedia: %s (%s)", res.route,
                 f"EFI entry now boots {res.efi_image}" if res.route == noprompt.ROUTE_PATCHED else src.name)
    if res.route == noprompt.ROUTE_SEND_KEY:
        ctx.log.warning("bootmedia: the media have no %s; the install will press a key over QMP to get "
                        "past the UEFI prompt", noprompt.NOPROMPT_NAME)
    files = {"iso": ISO} if res.route == noprompt.ROUTE_PATCHED else {}
    return Output(files=files, data={**res.to_dict(), "source": src.name})


STAGE = StageDef(name="bootmedia", version=1, reads=("firmware",), inputs=("fetch",), run=run,
                 doc=__doc__.splitlines()[0])
