"""`ironforge ci github|gitlab`: which file to write, and writing it whole."""

from __future__ import annotations

import json
import os
from pathlib import Path

from builder.ci import workflows
from builder.errors import UsageError

_MAX_MATRIX = 1 << 20


def render(system: str, *, cron: str | None = None, from_matrix: Path | None = None) -> str:
    if system == "github":
        if from_matrix is not None:
            raise UsageError("--from-matrix is for gitlab (GitHub reads the matrix from the plan job's output)")
        return workflows.github(cron or workflows.DEFAULT_CRON)
    if system == "gitlab":
        if cron is not None:
            raise UsageError("--cron is for github: GitLab schedules are set in the project "
                             "(Build > Pipeline schedules), not in the file")
        if from_matrix is None:
            return workflows.gitlab()
        try:
            if Path(from_matrix).stat().st_size > _MAX_MATRIX:
                raise UsageError(f"{from_matrix}: larger than {_MAX_MATRIX >> 20} MiB; not a plan matrix")
            matrix = json.loads(Path(from_matrix).read_text())
        except OSError as exc:
            raise UsageError(f"{from_matrix}: cannot read: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"{from_matrix}: not JSON ({exc})",
                             hint="write it with: ironforge plan --json --matrix --all > matrix.json") from None
        return workflows.gitlab_child(matrix)
    raise UsageError(f"unknown CI system {system!r}: github or gitlab")


def write(text: str, path: Path) -> Path:
    """Write ``path`` whole: a temporary file renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
