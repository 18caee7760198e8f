"""``ironforge export IMAGE --format F…``: any existing image, written in the asked formats into
``<output-dir>/<name>/``, assembled privately and swapped in whole (like a build's publish).

The image is untrusted: builder.image.probe looks at it first (no backing or data files, sane
size), and the format it found is passed explicitly to every qemu-img call.
"""

from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path

from builder import swap
from builder.errors import UsageError
from builder.exports import FORMATS, beside, check, sbom
from builder.exports.machine import Machine
from builder.exports.write import write_format
from builder.image.probe import probe

NAME_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
MAX_PACKAGES_TXT = 16 << 20


def _packages_beside(image: Path) -> list[dict]:
    """A published image's packages.txt (it sits next to the image), bounded; else none."""
    p = image.parent / "packages.txt"
    try:
        if p.is_file() and p.stat().st_size <= MAX_PACKAGES_TXT:
            return sbom.parse_packages_txt(p.read_text(errors="replace"))
    except OSError:
        pass
    return []


def export_image(image: Path | str, formats: list[str], output_root: Path, *, name: str | None = None,
                 memory_mib: int = 1024, cpus: int = 1, firmware: str = "bios", family: str = "linux",
                 compress: bool = True, compression: str = "zstd", jobs: int = 1) -> dict:
    info = probe(image)
    name = name or info.path.name.split(".")[0]
    if not re.fullmatch(NAME_RE, name):
        raise UsageError(f"name {name!r} is not usable as a file name",
                         hint="use letters, digits, '.', '_' and '-' (--name)")
    if not formats:
        raise UsageError("no --format given", hint="formats: " + ", ".join(FORMATS))
    for fmt in formats:
        check(fmt, info.virtual_size)
    formats = list(dict.fromkeys(formats))
    if "libvirt" in formats and "qcow2" not in formats:
        formats.insert(0, "qcow2")
    machine = Machine(name=name, vcpus=cpus, memory_mib=memory_mib, firmware=firmware, family=family)
    output_root.mkdir(parents=True, exist_ok=True)
    swap.sweep(output_root)
    with swap.staged(output_root, name) as tmp:
        def one(fmt: str) -> tuple[str, str, str]:
            # the same per-format path as a build's export parts; here every file is named for the
            # output, as it is published
            fname, facts = write_format(info.path, info.format, fmt, machine, tmp, name, compress=compress,
                                        compression=compression)
            return fmt, fname, facts["sha256"]

        todo = [f for f in formats if FORMATS[f].write is not None]
        # each writer reads the source and writes its own files: they can run side by side; each
        # thread waits for its own qemu-img/tar, so their death-with-parent rule holds
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            done = list(pool.map(one, todo))
        files = {fmt: fname for fmt, fname, _ in done}
        known = {fname: digest for _, fname, digest in done}
        final = output_root / name
        qcow2 = files.get("qcow2")
        beside.write(tmp, final, name, machine, formats, _packages_beside(info.path), qcow2_file=qcow2,
                     image_sha256=known.get(qcow2 or ""), known=known)
        if "libvirt" in formats:
            files["libvirt"] = f"{name}.xml"
        swap.install(tmp, final)
    return {"name": name, "dir": str(final), "source": info.to_dict(), "formats": formats,
            "files": {fmt: str(final / f) for fmt, f in files.items()},
            "machine": vars(machine).copy()}
