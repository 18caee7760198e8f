"""Open the operating system on a disk in a libguestfs session: find it by inspection, mount its
filesystems, and trim them when the edits are done.

The one way every stage and the verifier do this. Where callers need different behaviour the
difference is an explicit option, with the caller saying why.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Iterator

from builder.errors import BuildError, GuestfsError, IronforgeError

log = logging.getLogger("ironforge.guestfs")


@dataclass(frozen=True)
class GuestOS:
    root: str                        # the root filesystem's device, as inspection found it
    type: str                        # "linux", "windows"…
    mountpoints: tuple[str, ...]     # what is mounted, outermost first
    devices: dict[str, str] = field(default_factory=dict, hash=False)  # every mountpoint inspection found -> device


def _order(mountpoints) -> list[str]:
    # outermost first, so /boot mounts over / and /boot/efi over /boot
    return sorted(mountpoints, key=lambda mp: (mp.count("/") if mp != "/" else 0, mp))


def mount_os(g, *, what: str, error: type[IronforgeError] = BuildError, first_of_several: bool = False,
             want_type: str | None = None, type_hint: str | None = None,
             skip_unmountable: bool = False) -> GuestOS:
    """Find the operating system in the session's disks and mount its filesystems.

    ``error``: the error class raised when there is no usable OS (the caller's own kind).
    ``first_of_several``: take the first OS inspection finds instead of refusing a disk with several.
    ``want_type``: refuse any other OS type ("linux"), with ``type_hint``.
    ``skip_unmountable``: a filesystem that will not mount (a stale fstab entry) is logged and left
    out instead of failing.
    """
    roots = g.inspect_os()
    if not roots:
        raise error(f"{what}: no operating system found in the image",
                    hint="libguestfs inspection found no root filesystem: is this a bootable system disk?")
    if len(roots) > 1 and not first_of_several:
        raise error(f"{what}: more than one operating system in the image ({', '.join(roots)})",
                    hint="ironforge edits images that hold exactly one operating system")
    root = roots[0]
    os_type = g.inspect_get_type(root)
    if want_type is not None and os_type != want_type:
        raise error(f"{what}: the image holds a {os_type} system, not {want_type.capitalize()}", hint=type_hint)
    devices = g.inspect_get_mountpoints(root)
    # the root inspection found goes on / whatever the guest's fstab says
    g.mount(root, "/")
    mounted = ["/"]
    for mp in _order(m for m in devices if m != "/"):
        try:
            g.mount(devices[mp], mp)
        except GuestfsError as exc:
            if not skip_unmountable:
                raise
            log.debug("%s: not mounting %s on %s: %s", what, devices[mp], mp, exc)
            continue
        mounted.append(mp)
    log.debug("%s: mounted %s", what, ", ".join(f"{root if mp == '/' else devices[mp]} on {mp}" for mp in mounted))
    return GuestOS(root=root, type=os_type, mountpoints=tuple(mounted), devices=dict(devices))


def trim(g, guest: GuestOS, *, what: str = "trim") -> None:
    """fstrim every mounted filesystem (innermost first), so the blocks the edits freed do not
    bloat the layer or the flattened image. The drive needs discard="besteffort" for this to free
    qcow2 clusters."""
    for mp in reversed(guest.mountpoints):
        try:
            g.fstrim(mp)
        except GuestfsError as exc:   # a filesystem without FITRIM: only the size suffers
            log.warning("%s: fstrim %s: %s", what, mp, exc)


@contextlib.contextmanager
def opened(g, *, what: str, trim_after: bool = True, **options) -> Iterator[GuestOS]:
    """``mount_os`` (same options), yield the OS, then trim (unless ``trim_after`` is False: a
    throw-away overlay gains nothing from it) and unmount everything. On an error inside the block
    nothing is trimmed: the session is being abandoned anyway."""
    guest = mount_os(g, what=what, **options)
    yield guest
    if trim_after:
        trim(g, guest, what=what)
    g.umount_all()
