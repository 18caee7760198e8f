"""Sealing a finished stage's work directory before it becomes a cache entry.

Two promises are kept here, once, for every stage:

- every file a stage names in ``Output.files`` exists in its work directory as a regular
  file (or a relative symlink to one inside it). A stage that names a file it did not write
  fails at commit, with the stage and the file named, instead of two stages later;
- every committed file is read-only: its write bits are cleared and its read bits kept (0644 ->
  0444; a stage's private file, such as an answer CD holding encoded passwords, stays 0600 -> 0400,
  private). Later layers use a cached image as their qcow2
  backing file, so its bytes must never change. Directories stay writable by the owner so
  cache gc and the sweep of dead runs can delete entries without a chmod dance; the bytes
  others depend on are the files'.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from builder.errors import BuildError

WRITE_BITS = 0o222


def check_outputs(workdir: Path, files: dict[str, str], stage: str) -> None:
    """Every ``Output.files`` entry names a regular file inside ``workdir``."""
    root = os.path.realpath(workdir)
    for logical, name in files.items():
        where = f"stage {stage}: output {logical!r} names {name!r}"
        if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in Path(name).parts:
            raise BuildError(f"{where}, which is not a relative path inside its work directory",
                             hint="a stage writes its outputs into ctx.workdir and names them relative to it")
        p = os.path.join(workdir, name)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            raise BuildError(f"{where}, which the stage did not write",
                             hint="the stage's run() returned an Output naming a missing file") from None
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(p)
            real = os.path.realpath(p)
            if os.path.isabs(target) or os.path.commonpath([root, real]) != root:
                raise BuildError(f"{where}, a symlink to {target!r} outside its work directory",
                                 hint="copy or hard-link the file into ctx.workdir; the cache entry "
                                      "must hold its own bytes")
            if not os.path.isfile(real):
                raise BuildError(f"{where}, a symlink to {target!r}, which is not a regular file")
        elif not stat.S_ISREG(st.st_mode):
            raise BuildError(f"{where}, which is not a regular file")


def make_read_only(tree: Path) -> None:
    """Clear the write bits of every regular file under ``tree`` (symlinks are left alone: chmod
    would follow them)."""
    for dirpath, _dirs, names in os.walk(tree):
        for n in names:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) and st.st_mode & WRITE_BITS:
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~WRITE_BITS)
