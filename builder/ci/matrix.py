"""The CI matrix from a plan: one job per recipe, with its arch.

``{"include": [{"recipe": "debian-12-amd64", "arch": "x86_64"}, …]}`` is what GitHub Actions'
``strategy.matrix`` takes through ``fromJSON``, and what our GitLab child pipeline is generated
from. One line: a GitHub job output is a string, and `echo "matrix=…" >> $GITHUB_OUTPUT` takes one.
Recipes that cannot build as they stand (Windows recipes without media) are left out: a matrix
job for them could only fail.
"""

from __future__ import annotations

import json


def ci_matrix(rows: list[tuple[str, str, bool]]) -> dict:
    """``rows``: (recipe, arch, buildable) in plan order → the matrix, grouped by arch."""
    include = [{"recipe": name, "arch": arch} for name, arch, ok in rows if ok]
    include.sort(key=lambda e: (e["arch"], e["recipe"]))
    return {"include": include}


def to_line(matrix: dict) -> str:
    return json.dumps(matrix, separators=(",", ":"), sort_keys=True)
