"""A root tree on the host, read through the few libguestfs calls the image readers use.

Why: ``imagereport.take`` (kernels, initramfs listings, package facts) was written against a
mounted guest. The disk stage now has the tree on the host before the filesystem is made, so
it reads the same report here at native speed, with the same code, instead of in an appliance.

Paths are guest paths. Symlinks resolve inside the tree: an absolute target restarts at the
tree's root and ``..`` stops there, as they would in the guest, so no read leaves the tree.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from builder.host import proc as hostproc
from builder.host import tools

MAX_LINKS = 40       # as the kernel's ELOOP limit
COMMAND_TIMEOUT = 600


class TreeView:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _resolve(self, path: str, follow: bool) -> Path | None:
        """The host path for guest ``path`` (last component followed only if ``follow``);
        None when it does not exist or loops."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            host = self.root.joinpath(*done, name)
            try:
                st = os.lstat(host)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode) and (parts or follow):
                hops += 1
                if hops > MAX_LINKS:
                    return None
                target = os.readlink(host)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            done.append(name)
        return self.root.joinpath(*done)

    def _stat(self, path: str, follow: bool) -> os.stat_result | None:
        host = self._resolve(path, follow)
        if host is None:
            return None
        try:
            return os.lstat(host)
        except OSError:
            return None

    def is_file(self, path: str, followsymlinks: bool = False) -> bool:
        st = self._stat(path, followsymlinks)
        return st is not None and stat.S_ISREG(st.st_mode)

    def is_dir(self, path: str, followsymlinks: bool = False) -> bool:
        st = self._stat(path, followsymlinks)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def exists(self, path: str) -> bool:
        return self._stat(path, True) is not None

    def ls(self, path: str) -> list[str]:
        host = self._resolve(path, True)
        if host is None:
            raise FileNotFoundError(path)
        return sorted(os.listdir(host))

    def _file(self, path: str) -> Path:
        host = self._resolve(path, True)
        if host is None or not stat.S_ISREG(os.lstat(host).st_mode):
            raise FileNotFoundError(f"{path}: not a regular file in the tree")
        return host

    def cat(self, path: str) -> str:
        return self._file(path).read_bytes().decode("utf-8", "replace")

    def read_file(self, path: str) -> bytes:
        return self._file(path).read_bytes()

    def download(self, path: str, local: str) -> None:
        shutil.copyfile(self._file(path), local)

    def command(self, argv: list[str]) -> str:
        """``argv`` run chrooted in the tree: the guest's own tools (lsinitramfs when the host has
        none; useradd, locale-gen, visudo for ``TreeEdit``). Nothing is mounted in the tree (no
        /proc, no /sys): only tools that edit files work, which is all they are used for."""
        proc = hostproc.run([tools.require("chroot"), str(self.root), *argv],
                            what=f"{argv[0]} in the image's root", timeout=COMMAND_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in the tree failed: {proc.stderr.strip()[-400:]}")
        return proc.stdout
