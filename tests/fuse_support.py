"""A host without /dev/fuse, for real: Python code run in a private mount namespace whose /dev
is an empty tmpfs (``unshare -m``, util-linux). Used to show what the host-side routes do on a
machine that has no FUSE, without patching the module that checks for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def without_dev_fuse(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none /dev && exec "$@"', "sh",
                           sys.executable, "-c", code, *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
