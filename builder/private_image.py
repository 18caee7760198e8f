"""Whether an image may be written in place (``ironforge run --no-snapshot``).

Cache entries are other layers' qcow2 backing files and published outputs are hard-linked or
cloned from them: booting one writable would change bytes that other images, or the next
reader of ``output/``, rely on. Writable means: outside the cache and the output folder, not
read-only, and its only name (a second hard link would be changed too).
"""

from __future__ import annotations

import os
from pathlib import Path

from builder.errors import UsageError


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def location_reason(path: Path, cache_dir: Path, output_dir: Path) -> str | None:
    """Why a file at ``path`` belongs to ironforge (cache or outputs), or None."""
    real = Path(os.path.realpath(path))
    if _inside(real, cache_dir):
        return f"it is inside the cache ({cache_dir}), where other layers use it as a backing file"
    if _inside(real, output_dir):
        return f"it is a published output (in {output_dir})"
    return None


def shared_reason(image: Path, cache_dir: Path, output_dir: Path) -> str | None:
    """Why writing ``image`` in place could change someone else's bytes, or None."""
    where = location_reason(image, cache_dir, output_dir)
    if where:
        return where
    st = Path(os.path.realpath(image)).stat()
    if not st.st_mode & 0o222:
        return "it is read-only"
    if st.st_nlink > 1:
        return f"it has {st.st_nlink} hard links, which would all change"
    return None


def require_private(image: Path, cache_dir: Path, output_dir: Path) -> None:
    why = shared_reason(image, cache_dir, output_dir)
    if why:
        raise UsageError(f"{image}: --no-snapshot would write into it, but {why}",
                         hint="boot a private writable copy with --copy PATH, or drop --no-snapshot "
                              "(changes then go to a throw-away snapshot)")


def check_copy_destination(dest: Path, cache_dir: Path, output_dir: Path) -> None:
    if dest.exists() or dest.is_symlink():
        raise UsageError(f"--copy {dest}: already exists", hint="name a new file")
    why = location_reason(dest, cache_dir, output_dir)
    if why:
        raise UsageError(f"--copy {dest}: {why.replace('it is', 'that is', 1)}",
                         hint="put the private copy outside the cache and the output folder")
