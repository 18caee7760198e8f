"""SHA256SUMS beside the outputs, in the format ``sha256sum -c`` reads."""

from __future__ import annotations

from pathlib import Path

from builder.exports.sparse_sha256 import sha256_sparse

NAME = "SHA256SUMS"


def write(directory: Path, known: dict[str, str] | None = None) -> Path:
    """Sum every regular file in ``directory`` (``known``: name -> digest already computed)."""
    known = known or {}
    lines = [f"{known.get(p.name) or sha256_sparse(p)}  {p.name}\n"
             for p in sorted(directory.iterdir()) if p.is_file() and p.name != NAME]
    out = directory / NAME
    out.write_text("".join(lines))
    return out
