"""Find host tools; a missing one is an error naming the Debian package to install."""

from __future__ import annotations

import functools
import re
import shutil

from builder.errors import MissingEnvironment, ToolTimeout
from builder.host import proc as hostproc

# tool -> Debian package that provides it
PACKAGES: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-i386": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "gpgv": "gpgv",
    "gpg": "gnupg",
    "sfdisk": "fdisk",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "qemu-storage-daemon": "qemu-system-common",
    "umount": "mount",
    "mkfs.fat": "dosfstools",
    "chroot": "coreutils",
    "mcopy": "mtools",
    "mmd": "mtools",
    "xorriso": "xorriso",
    "cpio": "cpio",
    "debconf-set-selections": "debconf",
    "guestfish": "libguestfs-tools",
    "busybox": "busybox-static",
    "wiminfo": "wimtools",
    "wimcapture": "wimtools",
    "swtpm": "swtpm",
}

_VERSION_ARGS = {"gpgv": ["--version"], "mmdebstrap": ["--version"], "mke2fs": ["-V"], "sfdisk": ["--version"]}


def which(tool: str) -> str | None:
    return shutil.which(tool)


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pkg = PACKAGES.get(tool, tool)
        raise MissingEnvironment(f"required tool {tool!r} not found on PATH",
                                 hint=f"install it: apt-get install {pkg}  (or run: make setup)")
    return path


def require_python_module(name: str, package: str):
    try:
        return __import__(name)
    except ImportError as exc:
        raise MissingEnvironment(
            f"Python module {name!r} is not importable ({exc})",
            hint=f"install {package} and use a venv made from /usr/bin/python3 with "
                 "--system-site-packages (make setup does both)") from None


@functools.lru_cache(maxsize=None)
def version(tool: str) -> str | None:
    """First version-looking string a tool prints, or None if it is missing."""
    path = shutil.which(tool)
    if path is None:
        return None
    try:
        proc = hostproc.run([path, *_VERSION_ARGS.get(tool, ["--version"])], what=f"{tool} version",
                            timeout=30, check=False)
        if proc.returncode != 0:
            # no version flag (mkfs.fat, debconf-set-selections): the Debian package's version
            return _package_version(PACKAGES.get(tool))
        out = proc.stdout or proc.stderr  # mke2fs -V prints to stderr
    except (OSError, ToolTimeout):
        return None
    m = re.search(r"\d+(?:\.\d+)+(?:[-+~][\w.+~-]*)?", out)
    return m.group(0) if m else out.strip().splitlines()[0] if out.strip() else None


def _package_version(package: str | None) -> str | None:
    if not package or not shutil.which("dpkg-query"):
        return None
    try:
        proc = hostproc.run(["dpkg-query", "-W", "-f=${Version}", package], what="dpkg-query",
                            timeout=60, check=False)
    except ToolTimeout:
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def libguestfs_version() -> str | None:
    try:
        import guestfs  # noqa: F401
    except ImportError:
        return None
    g = guestfs.GuestFS(python_return_dict=True)
    try:
        v = g.version()
        return f"{v['major']}.{v['minor']}.{v['release']}{v['extra']}"
    finally:
        g.close()


def versions(tools: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """Versions of the named tools ('libguestfs' is understood), for cache keys."""
    out = {}
    for t in tools:
        out[t] = libguestfs_version() if t == "libguestfs" else version(t)
    return out
