"""A root tree on the host, edited through the few libguestfs calls ``builder.linux.customize`` uses.

Why: customizations that only edit files (hostname, time zone, locale, accounts, files, the
first-boot unit) used to cost a libguestfs launch of their own (about 22 s under TCG). The
disk stage has the bootstrap tree on the host before it makes the filesystem, so it applies
them there, with the same code, at native speed. The guest's own tools (useradd, locale-gen,
visudo, dpkg-query) run chrooted in the tree, as libguestfs runs them chrooted in the appliance.

Paths are guest paths and resolve as ``TreeView`` resolves them: symlinks are followed inside
the tree (an absolute target restarts at its root, ``..`` stops there), so no write leaves it.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path

from builder.linux.tree_view import MAX_LINKS, TreeView

NEW_FILE_MODE = 0o644      # what g.write gives a new file (the appliance's umask is 022)
NEW_DIR_MODE = 0o755


class TreeEdit(TreeView):
    def _parent(self, path: str) -> Path:
        """The host directory that holds guest ``path``'s last component (followed inside the tree)."""
        parent = self._resolve(posixpath.dirname(posixpath.normpath("/" + path)), True)
        if parent is None or not parent.is_dir() or parent.is_symlink():
            raise FileNotFoundError(f"{posixpath.dirname(path)}: no such directory in the tree")
        return parent

    def _leaf(self, path: str) -> Path:
        name = posixpath.basename(posixpath.normpath("/" + path))
        if name in ("", ".", ".."):
            raise ValueError(f"{path!r} names no file")
        return self._parent(path) / name

    def _target(self, path: str) -> Path:
        """Where a write to ``path`` lands: the path itself, or what a symlink there points to,
        resolved inside the tree (a missing target is created, as open(2) would in the guest)."""
        for _ in range(MAX_LINKS):
            leaf = self._leaf(path)
            if not leaf.is_symlink():
                return leaf
            here = "/" + leaf.parent.relative_to(self.root).as_posix()
            # normpath clamps "/.." at the root, as the kernel does at a chroot's root
            path = posixpath.normpath(posixpath.join(here, os.readlink(leaf)))
        raise OSError(f"{path}: too many levels of symbolic links in the tree")

    def write(self, path: str, content: str | bytes) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        host = self._target(path)
        # an existing file keeps its inode, mode and owner (e.g. /etc/shadow's 0640 root:shadow)
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, NEW_FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def chmod(self, mode: int, path: str) -> None:
        os.chmod(self._existing(path), mode)

    def chown(self, uid: int, gid: int, path: str) -> None:
        os.chown(self._existing(path), uid, gid)

    def _existing(self, path: str) -> Path:
        host = self._resolve(path, True)
        if host is None:
            raise FileNotFoundError(f"{path}: not in the tree")
        return host

    def mkdir_p(self, path: str) -> None:
        done = "/"
        for part in [p for p in path.split("/") if p not in ("", ".")]:
            done = posixpath.join(done, part)
            host = self._resolve(done, True)
            if host is None:
                os.mkdir(self._leaf(done), NEW_DIR_MODE)
            elif not stat.S_ISDIR(os.stat(host).st_mode):
                raise FileExistsError(f"{done}: exists in the tree and is not a directory")

    def ln_sf(self, target: str, linkname: str) -> None:
        leaf = self._leaf(linkname)
        if leaf.is_dir() and not leaf.is_symlink():
            # ln -sf into an existing directory makes the link inside it, as libguestfs's does
            leaf = leaf / posixpath.basename(target)
        if leaf.is_symlink() or leaf.exists():
            leaf.unlink()
        os.symlink(target, leaf)

    def rm_f(self, path: str) -> None:
        leaf = self._leaf(path)
        if leaf.is_dir() and not leaf.is_symlink():
            raise IsADirectoryError(f"{path}: is a directory")
        leaf.unlink(missing_ok=True)
