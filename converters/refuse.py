"""The one way an input is refused: an UnsafeImageError (exit 1) saying what and why."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from builder.errors import UnsafeImageError


def refuse(where: Path | str, why: str, hint: str | None = None) -> NoReturn:
    raise UnsafeImageError(f"{where}: refused: {why}", hint=hint)
