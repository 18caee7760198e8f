"""Run the ironforge CLI as a user would, from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli(*args, check_rc: int | None = 0, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "builder.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc
