"""An OVA's ``.mf``: ``SHA1(name)= hex`` / ``SHA256(name)= hex`` lines, each checked.

A wrong digest or a listed file that is missing is a refusal; a line in another shape is noted
and ignored (virt-v2v warns on those too). Line format: V22 input/OVA.ml.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from converters.paths import inside
from converters.refuse import refuse

_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\((.*)\)= ?([0-9a-fA-F]+)\r?$")
MAX_MF = 1 << 20


def check(mf: Path, base: Path) -> tuple[list[str], list[str]]:
    """(names verified, notes). Raises on a mismatch or a missing file."""
    if mf.stat().st_size > MAX_MF:
        refuse(mf, "manifest larger than 1 MiB")
    verified, notes = [], []
    for n, line in enumerate(mf.read_bytes().decode("utf-8", "replace").split("\n"), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            notes.append(f"{mf.name}:{n}: line not understood, ignored: {line.strip()[:80]!r}")
            continue
        algo, name, want = m.group(1).lower(), m.group(2), m.group(3).lower()
        target = inside(base, name, mf, "manifest entry")
        if not target.is_file():
            refuse(mf, f"manifest lists {name!r}, which is not in the OVA")
        h = hashlib.new(algo)
        with open(target, "rb") as f:
            while buf := f.read(1 << 20):
                h.update(buf)
        if h.hexdigest() != want:
            refuse(mf, f"{algo.upper()} of {name!r} is {h.hexdigest()}, the manifest says {want}",
                   hint="the OVA is damaged or was altered after it was made")
        verified.append(name)
    return verified, notes
