"""Look at an untrusted disk image without letting it touch anything but itself.

A hostile image can name a backing file or an external data file (``/etc/shadow``, a device…) and
QEMU would happily read it into the guest; it can claim an absurd virtual size; its header can be
crafted to make ``qemu-img`` burn CPU or memory. So:

* ``qemu-img info --output=json`` runs in a child under CPU-time and address-space rlimits with a
  wall-clock timeout (``-U`` so a running VM's lock does not block a read-only look);
* the format is *detected* (never taken from the extension) and must then be passed explicitly to
  every later QEMU/libguestfs call (``ImageInfo.format``): with an explicit format QEMU never probes,
  so a raw image whose first bytes look like a qcow2 header cannot turn into one;
* backing files, external data files and oversize images are refused with UnsafeImageError;
* the name is resolved here to an absolute path of a regular file, and a name that starts like a
  QEMU pseudo-protocol (``json:``, ``nbd:``, ``file:`` …, a ':' before any '/') is refused before
  that, so whatever a caller passes, qemu-img and QEMU only ever see a plain local file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from builder.errors import UnsafeImageError
from builder.host import proc
from builder.host.tools import require

DEFAULT_MAX_VIRTUAL_SIZE = 2 << 40      # 2 TiB
CPU_SECONDS = 30
ADDRESS_SPACE = 1 << 30                  # 1 GiB
WALL_SECONDS = 60

# formats QEMU can read that we accept as disk images
ACCEPTED = ("raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi", "parallels", "qed")


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    format: str            # detected format: pass this explicitly to QEMU and libguestfs
    virtual_size: int
    actual_size: int | None
    encrypted: bool = False
    dirty: bool = False

    def to_dict(self) -> dict:
        return {"path": str(self.path), "format": self.format, "virtual_size": self.virtual_size,
                "actual_size": self.actual_size}


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def run_qemu_img_info(path: Path, *, cpu_seconds: int = CPU_SECONDS, address_space: int = ADDRESS_SPACE,
                      timeout: float = WALL_SECONDS, fmt: str | None = None) -> dict:
    """``qemu-img info --output=json`` on ``path`` under rlimits; the parsed JSON.

    With ``fmt`` qemu does not probe: it reads the file as that format (converters pass the
    format their own header parsers found, then cross-check what qemu reports)."""
    path = local_path(path)
    cmd = [require("qemu-img"), "info", "--output=json", "-U"] + (["-f", fmt] if fmt else []) + [str(path)]
    res = proc.run(cmd, what=f"{path}: qemu-img info", timeout=timeout, check=False,
                   limits=proc.Limits(cpu_seconds=cpu_seconds, address_space=address_space, core_size=0),
                   timeout_error=UnsafeImageError,
                   hint="the image header may be crafted to stall readers; do not use it")
    if res.returncode != 0:
        why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit code {res.returncode}"
        if res.returncode < 0:
            why = f"killed by signal {-res.returncode} (CPU or memory limit)"
        raise UnsafeImageError(f"{path}: not a readable disk image: {why}",
                               hint="check the file is a complete disk image (qcow2, raw, vmdk, vhd/vhdx, vdi…)")
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError as exc:
        raise UnsafeImageError(f"{path}: qemu-img info printed something that is not JSON ({exc})") from None


_PSEUDO_PROTOCOL = re.compile(r"^[^/]*:")


def local_path(name: Path | str) -> Path:
    """``name`` as an absolute path, refusing anything QEMU could read as a protocol
    (``json:{…}``, ``nbd:host:port``, ``file:…``, ``http:…``): a ':' before the first '/'."""
    text = str(name)
    if not text or "\0" in text:
        raise UnsafeImageError(f"{text!r}: not a file name")
    if _PSEUDO_PROTOCOL.match(text):
        raise UnsafeImageError(f"{text}: looks like a QEMU protocol name ({text.split(':', 1)[0]}:), "
                               "not a file; only local image files are accepted",
                               hint=f"if it really is a file in this directory, write ./{text}")
    return Path(text).resolve()


def probe(path: Path | str, *, max_virtual_size: int = DEFAULT_MAX_VIRTUAL_SIZE,
          allow_formats: tuple[str, ...] = ACCEPTED, fmt: str | None = None,
          allowed_files: tuple[Path, ...] = ()) -> ImageInfo:
    """Inspect an untrusted image safely; refuse anything that would reach outside it.

    ``ImageInfo.path`` is the resolved absolute path: callers hand that (never the name they were
    given) to QEMU and libguestfs. ``fmt``: read it as this format (no probing). ``allowed_files``:
    other files a vmdk descriptor may use as extents (already confined to the input's folder by
    the caller)."""
    path = local_path(path)
    if not path.exists():
        raise UnsafeImageError(f"{path}: no such file")
    if not path.is_file():
        # a block device or FIFO is not an image file we should read from
        raise UnsafeImageError(f"{path}: not a regular file")
    info = run_qemu_img_info(path, fmt=fmt)
    fmt = info.get("format")
    if info.get("backing-filename") or info.get("full-backing-filename") or info.get("backing-image"):
        raise UnsafeImageError(
            f"{path}: refers to a backing file {info.get('backing-filename')!r}; a backing file would read "
            "another file from this host into the image",
            hint="flatten it where it was made (qemu-img convert -O qcow2 in.qcow2 flat.qcow2) and pass the result")
    data_file = (((info.get("format-specific") or {}).get("data") or {}).get("data-file"))
    if data_file:
        raise UnsafeImageError(
            f"{path}: uses an external data file {data_file!r}; it would read another file from this host",
            hint="convert it to a self-contained image first")
    if fmt not in allow_formats:
        raise UnsafeImageError(f"{path}: format {fmt!r} is not accepted here "
                               f"(accepted: {', '.join(allow_formats)})")
    if fmt == "vmdk":
        # A monolithic vmdk may list extents in other files: those would be read from this host too.
        extents = ((info.get("format-specific") or {}).get("data") or {}).get("extents") or []
        names = {Path(e.get("filename", "")).resolve() for e in extents}
        allowed = {path.resolve(), *(Path(f).resolve() for f in allowed_files)}
        if not names <= allowed:
            raise UnsafeImageError(f"{path}: a vmdk descriptor whose extents live in other files",
                                   hint="pass a monolithic (single-file) vmdk")
    vsize = int(info.get("virtual-size") or 0)
    if vsize <= 0:
        raise UnsafeImageError(f"{path}: reports a virtual size of {vsize}")
    if vsize > max_virtual_size:
        raise UnsafeImageError(f"{path}: virtual size {_human(vsize)} is beyond the limit of "
                               f"{_human(max_virtual_size)}",
                               hint="raise the limit only if you trust the image")
    return ImageInfo(path=path, format=fmt, virtual_size=vsize, actual_size=info.get("actual-size"),
                     encrypted=bool(info.get("encrypted")), dirty=bool(info.get("dirty-flag")))
