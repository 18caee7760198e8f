"""Replacing a published directory so that readers only ever see a complete one.

``replace_dir(new, final)`` puts the complete directory ``new`` at ``final``: the first time by
a rename that refuses to overwrite, after that by ``renameat2(RENAME_EXCHANGE)``, which swaps
the two names in one step, so at every instant ``final`` is either the old complete directory
or the new one (a plain rename cannot replace a non-empty directory, and moving the old one
aside first leaves a moment with nothing there). ``flip_symlink`` is the other atomic step, for
layouts that point a ``latest`` link at a version folder.

Work in progress carries the owning pid in its name (``.<name>.tmp-<pid>-…``); ``sweep``
removes those whose process is gone, so a run killed at any point leaves no debris that the
next one does not clear.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from builder.cache.seal import make_read_only
from builder.cache.store import fsync_dir, fsync_tree
from builder.errors import BuildError
from builder.host.proc import pid_alive

_AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

# .<name>.tmp-<pid>-<random> (ours), .<name>.old-<pid> (earlier versions of publish)
# The names work_dir and replace_dir give work in progress; the pid is group 1 (cache/sweep.py
# reads the same names, with a dry run and an age rule for names older ones left without a pid).
DEBRIS = re.compile(r"^\..+\.(?:tmp|old)-(?P<pid>\d+)(?:-.*)?$")


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        raise BuildError("this C library has no renameat2(); atomic replacement of an output "
                         "needs glibc 2.28 or later") from None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(src), None, str(dst))


def exchange(a: Path, b: Path) -> None:
    """Swap the names ``a`` and ``b`` (both must exist) in one atomic step."""
    try:
        _renameat2(a, b, RENAME_EXCHANGE)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise BuildError(f"{b.parent}: this filesystem cannot swap two directories atomically "
                             f"(renameat2 RENAME_EXCHANGE: {exc.strerror})",
                             hint="put the output directory (--output-dir) on a local filesystem "
                                  "such as ext4, xfs, btrfs or tmpfs") from None
        raise


def work_dir(root: Path, name: str) -> Path:
    """A fresh private directory in ``root`` to assemble ``name`` in, named so ``sweep`` can tell
    whether its owner still runs."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=root))


@contextmanager
def staged(root: Path, name: str) -> Iterator[Path]:
    """A ``work_dir`` for ``name``, readable by everyone on the host like what it will become;
    removed again if the block fails (a kill leaves it to ``sweep``)."""
    tmp = work_dir(root, name)
    try:
        tmp.chmod(0o755)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def install(tmp: Path, final: Path, *, seal: bool = True,
            how: Callable[[Path, Path], None] | None = None) -> None:
    """Make the assembled ``tmp`` the complete ``final``: sealed read-only (unless its files are
    already store entries' read-only links), flushed to disk, then swapped in (``replace_dir``
    unless ``how`` says otherwise) and the parent directory flushed, so a crash leaves either the
    old or the new whole."""
    if seal:
        make_read_only(tmp)
    fsync_tree(tmp)
    (how or replace_dir)(tmp, final)
    fsync_dir(final.parent)


def replace_dir(new: Path, final: Path) -> None:
    """Make the complete directory ``new`` appear at ``final``; the previous ``final`` (if any)
    is deleted. ``new`` must be a ``work_dir`` of the same parent."""
    try:
        _renameat2(new, final, RENAME_NOREPLACE)
        return
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            if not os.path.lexists(final):  # no NOREPLACE here: a rename into the empty name
                os.rename(new, final)
                return
    exchange(new, final)
    # ``new`` now names the previous output; it still carries our pid, so if we die before
    # this removal the next sweep takes it
    shutil.rmtree(new, ignore_errors=True)


def flip_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new link under a temporary name, renamed over)."""
    tmp = link.parent / f".{link.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        os.unlink(tmp)
        raise




def sweep(root: Path) -> list[Path]:
    """Remove work in progress of dead processes from ``root``; what is removed is returned."""
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return removed
    for p in entries:
        m = DEBRIS.match(p.name)
        if not m or pid_alive(int(m["pid"])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed
