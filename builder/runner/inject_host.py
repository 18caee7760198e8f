"""Put the boot probe into a throw-away overlay from the host, for images ironforge made itself.

Why: ``builder.runner.inject`` opens the overlay in a libguestfs appliance, which costs 20-30 s
under TCG: a fifth of a whole verified build. When the verify stage follows this build's own
disk stage, where the root filesystem is is known (ext4, at a byte offset, with a UUID the disk
stage chose), so the probe's three entries (script, unit, enable link) are written with debugfs
into the overlay, seen as a raw file through qemu-storage-daemon's FUSE export. About a second.

Only for those images: debugfs (libext2fs) is not hardened against hostile filesystems, so any
other image (``ironforge verify IMAGE``, conversions, installer builds) goes to libguestfs. The
superblock is checked first (magic, the UUID the disk stage gave it, no journal to replay):
anything unexpected raises ``HostInjectRefused`` and the caller falls back to the appliance.
Only the overlay is written: the image under it is its read-only backing file.
"""

from __future__ import annotations

import posixpath
import struct
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.host import fuse_export
from builder.host import proc as hostproc
from builder.host import tools
from builder.runner import guest_probe

DEBUGFS_TIMEOUT = 120

_SUPERBLOCK_AT = 1024
_EXT4_MAGIC = 0xEF53
_INCOMPAT_RECOVER = 0x4     # the journal holds transactions not yet written to the filesystem


class HostInjectRefused(BuildError):
    """The host route does not apply to this image; the caller uses libguestfs instead."""


@dataclass(frozen=True)
class OwnRoot:
    """Where an image ironforge made keeps its root filesystem (from the disk stage's data)."""
    offset: int         # bytes from the start of the disk
    uuid: str           # the ext4 filesystem's UUID


def own_root(disk_data: dict) -> OwnRoot | None:
    """The root filesystem the disk stage recorded, or None when its data does not say."""
    root = next((p for p in disk_data.get("partitions") or () if p.get("name") == "root"), None)
    if root is None or not disk_data.get("root_uuid") or not isinstance(root.get("start"), int):
        return None
    return OwnRoot(offset=root["start"], uuid=str(disk_data["root_uuid"]))


def check_superblock(raw: Path, root: OwnRoot) -> None:
    with open(raw, "rb") as f:
        f.seek(root.offset + _SUPERBLOCK_AT)
        sb = f.read(1024)
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != _EXT4_MAGIC:
        raise HostInjectRefused(f"no ext4 superblock at byte {root.offset}")
    found = str(uuidlib.UUID(bytes=sb[0x68:0x78]))
    if found != root.uuid:
        raise HostInjectRefused(f"the filesystem at byte {root.offset} is {found}, not {root.uuid}")
    if struct.unpack_from("<I", sb, 0x60)[0] & _INCOMPAT_RECOVER:
        raise HostInjectRefused("the root filesystem's journal needs recovery")


def _debugfs(device: str, *, script: Path | None = None, request: str | None = None,
             write: bool = False, what: str) -> str:
    cmd = [tools.require("debugfs"), *(["-w"] if write else []),
           *(["-f", str(script)] if script else ["-R", request]), device]
    return hostproc.run(cmd, what=what, timeout=DEBUGFS_TIMEOUT, check=True).stdout


def _commands(files: list[tuple[str, Path, int]], links: list[tuple[str, str]]) -> str:
    lines = []
    dirs = sorted({posixpath.dirname(p) for p, _, _ in files} | {posixpath.dirname(p) for p, _ in links})
    for d in dirs:
        # each missing component in turn; "File exists" answers for the others are expected
        parts = [x for x in d.split("/") if x]
        lines += [f"mkdir /{'/'.join(parts[:i])}" for i in range(1, len(parts) + 1)]
    for path, local, mode in files:
        # debugfs's write links its second argument into the current directory as one name
        lines += [f"rm {path}", f"cd {posixpath.dirname(path)}", f"write {local} {posixpath.basename(path)}",
                  f"sif {path} mode 0{0o100000 | mode:o}", f"sif {path} uid 0", f"sif {path} gid 0"]
    for path, target in links:
        lines += [f"rm {path}", f"symlink {path} {target}"]
    return "\n".join(lines) + "\n"


def inject_probe(overlay: Path, root: OwnRoot, work: Path, *, settle_seconds: int,
                 what: str = "verify: inject probe") -> None:
    """The probe script, its unit and the enable link, written into ``overlay``'s root filesystem
    from the host, then read back. Raises HostInjectRefused when the host route does not apply."""
    why = fuse_export.unavailable()
    if why:
        raise HostInjectRefused(why)
    script = work / "probe.sh"
    script.write_text(guest_probe.script(settle_seconds))
    unit = work / "probe.service"
    unit.write_text(guest_probe.unit())
    files = [(guest_probe.SCRIPT_PATH, script, 0o755), (guest_probe.UNIT_PATH, unit, 0o644)]
    link = (guest_probe.WANTS_LINK, guest_probe.UNIT_PATH)
    cmds = work / "debugfs.cmds"
    cmds.write_text(_commands(files, [link]))
    with fuse_export.raw_view(overlay, work / "overlay.raw", writable=True, what=what) as raw:
        check_superblock(raw, root)
        device = f"{raw}?offset={root.offset}"
        _debugfs(device, script=cmds, write=True, what=f"{what}: debugfs")
        # debugfs reports a failed request on stderr and still exits 0: read everything back
        for path, local, mode in files:
            got = _debugfs(device, request=f"cat {path}", what=f"{what}: read back {path}")
            meta = _debugfs(device, request=f"stat {path}", what=f"{what}: stat {path}")
            if got != local.read_text() or f"Mode:  {mode:04o}" not in meta or "User:     0" not in meta:
                raise BuildError(f"{what}: {path} did not land in the overlay as written",
                                 hint="run with --debug; debugfs's own messages are in its output")
        meta = _debugfs(device, request=f"stat {link[0]}", what=f"{what}: stat {link[0]}")
        if "Type: symlink" not in meta or f'"{link[1]}"' not in meta:
            raise BuildError(f"{what}: the probe's enable link did not land in the overlay")
