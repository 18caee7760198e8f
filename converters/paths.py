"""Confining names that come from inside an input (extents, hrefs, ploop Files, VMX disks).

A name is accepted only when it is relative, has no ``..`` part, is not a protocol string
(``json:``, ``nbd:``, ``http:`` …, which qemu parses as drivers rather than files), and,
resolved with every symlink followed, still lies inside the input's folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from converters.refuse import refuse

# qemu treats "proto:rest" as a protocol when no '/' comes before the ':' (block.c path_has_protocol)
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def looks_like_protocol(name: str) -> bool:
    return bool(_PROTOCOL.match(name)) and "/" not in name.split(":", 1)[0]


def check_name(name: str, where: Path | str, what: str) -> PurePosixPath:
    """A member or reference name: relative, no '..', no NUL, no protocol."""
    if not name or "\x00" in name:
        refuse(where, f"{what} has an empty or binary name {name!r}")
    if looks_like_protocol(name):
        refuse(where, f"{what} {name!r} is a protocol string, not a file name",
               hint="json:, nbd:, http: and similar names would make qemu open something else")
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", name):
        refuse(where, f"{what} {name!r} is an absolute path; it must be relative to the input",
               hint="absolute names would read files from this host")
    if ".." in p.parts:
        refuse(where, f"{what} {name!r} goes up a folder ('..'); it must stay inside the input")
    return p


def inside(base: Path, name: str, where: Path | str, what: str) -> Path:
    """``base/name`` after the checks above, resolved; refused when it leaves ``base``."""
    rel = check_name(name, where, what)
    base_r = base.resolve()
    target = (base_r / Path(*rel.parts)) if rel.parts else base_r
    real = Path(os.path.realpath(target))
    if real != base_r and base_r not in real.parents:
        refuse(where, f"{what} {name!r} leads outside {base} (to {real}) through a symlink")
    return real
