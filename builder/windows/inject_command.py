"""``ironforge inject-drivers IMAGE --virtio-win SRC``: injection into a disk the user has.

By default the image is left alone and a new self-contained qcow2 is written (``--output``, or
``<image>-virtio.qcow2`` beside it): a half-done edit must never be the user's only copy, and a
refusal leaves nothing behind. ``--in-place`` edits IMAGE itself, the way virt-customize does
(every check still runs before the first write). ``--dry-run`` opens everything read-only and
reports what would change. The image is untrusted: builder.image.probe looks at it first and
its detected format is passed explicitly from then on.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from builder.errors import UsageError
from builder.host.accel import Accel
from builder.host.proc import Limits, run
from builder.host.tools import require
from builder.image.probe import probe
from builder.windows import inject

COPY_TIMEOUT = 6 * 3600


def default_output(image: Path) -> Path:
    return image.with_name(image.stem + "-virtio.qcow2")


def record_paths(out: Path) -> tuple[Path, Path]:
    base = out.with_suffix("")
    return base.with_name(base.name + ".inject.reg"), base.with_name(base.name + ".inject.json")


def inject_drivers(image: Path, virtio_win: Path, accel: Accel, *, output: Path | None = None,
                   in_place: bool = False, dry_run: bool = False) -> dict:
    t0 = time.monotonic()
    image = Path(image)
    if in_place and output is not None:
        raise UsageError("--in-place and --output exclude each other")
    info = probe(image)
    if dry_run:
        with tempfile.TemporaryDirectory() as tmp:
            result = inject.inject_image(image, info.format, virtio_win, accel, Path(tmp),
                                         inject.InjectOptions(dry_run=True))
        return {"image": str(image), "output": None, "records": None,
                "seconds": round(time.monotonic() - t0, 1), **result.to_dict()}
    if in_place:
        target, fmt = image, info.format
    else:
        target = Path(output) if output else default_output(image)
        if target.exists():
            raise UsageError(f"{target} exists; not overwriting it",
                             hint="name another --output, remove it, or use --in-place")
        if target.resolve() == image.resolve():
            raise UsageError("--output is the input image", hint="use --in-place to edit it")
        fmt = "qcow2"
    reg, rep = record_paths(target)
    work = Path(tempfile.mkdtemp(prefix=".inject-", dir=target.parent))
    try:
        disk = target
        if not in_place:
            disk = work / "disk.qcow2"
            # the input's detected format, explicitly: never let qemu-img probe an untrusted file
            run([require("qemu-img"), "convert", "-q", "-f", info.format, "-O", "qcow2", str(image), str(disk)],
                what=f"copy {image.name}", timeout=COPY_TIMEOUT, limits=Limits(address_space=4 << 30))
        result = inject.inject_image(disk, fmt, virtio_win, accel, work / "hives")
        inject.write_record(result, work, stem="inject")
        if not in_place:
            disk.rename(target)
        (work / "inject.reg").replace(reg)
        (work / "inject.json").replace(rep)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"image": str(image), "output": str(target), "in_place": in_place,
            "records": {"reg": str(reg), "report": str(rep)},
            "seconds": round(time.monotonic() - t0, 1), **result.to_dict()}


def summary(d: dict) -> list[str]:
    g = d["guest"]
    changed = [f for f in d["files"] if f["action"] != "same"]
    lines = [f"{g['version_name']} ({g['product_name']}, build {g['build']}, {g['arch_word']}) on {g['device']}",
             f"drivers: {', '.join(d['drivers'])}; boot: {', '.join(d['block_drivers'])} via {d['database']}",
             f"files: {len(changed)} to write, {len(d['files']) - len(changed)} already there",
             f"registry: {len(d['registry'])} change(s)",
             "first boot: " + (f"installs {', '.join(d['firstboot']['infs'])} (at most "
                               f"{d['firstboot']['retry_cap']} boots)" if d["firstboot"]["installed"]
                               else d["firstboot"].get("reason", "not set up"))]
    if d["dry_run"]:
        lines.append("dry run: nothing written")
    elif not d["changed"]:
        lines.append("nothing to change: the drivers were already injected")
    if d.get("output"):
        lines.append(f"output: {d['output']}")
    if d.get("records"):
        lines.append(f"records: {d['records']['reg']}, {d['records']['report']}")
    lines += [f"warning: {w}" for w in d["warnings"]]
    return lines
