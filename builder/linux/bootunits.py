"""Which units a minimal server image starts at boot: one network stack, no LVM snapshot reaper.

A file edit of the root tree on the host (the ``*.wants/`` symlinks that ``systemctl enable``
made), so it costs nothing at build time and every boot is shorter.

The network: ironforge configures systemd-networkd (DHCP on every wired NIC, resolved for DNS;
builder.linux.mmdebstrap) and it ships in the systemd package every image has. Recipes may also
install ifupdown (the shipped ones do, for admins' /etc/network/interfaces), whose
``networking.service`` then runs at every boot to raise "auto" interfaces, of which the image
has none (lo is brought up by systemd itself), after ``ifupdown-pre.service`` has waited for
udev to settle. Only networkd stays on the boot path. ifupdown's hotplug path (``ifup@.service``
from its udev rule, for ``allow-hotplug`` stanzas an admin or a conversion adds) is untouched,
and ``systemctl enable networking`` brings the rest back.
"""

from __future__ import annotations

from pathlib import Path

from builder.linux import rootfs

# unit -> why it goes when networkd is the image's network stack
REDUNDANT_WITH_NETWORKD = {
    "networking.service": "ifupdown's boot-time ifup -a: no auto interface besides lo",
}


# unit -> why a minimal server image does not run it at every boot. Measured in a verify boot's
# systemd-analyze blame (probe evidence): after the first-boot SSH host keys, the longest unit.
NOT_FOR_A_MINIMAL_SERVER = {
    "e2scrub_reap.service": "removes stale e2scrub LVM snapshots; the image has no LVM",
}


def _enabled_links(root: Path, unit: str) -> list[str]:
    base = root / "etc/systemd/system"
    if base.is_symlink() or not base.is_dir():
        return []
    # not glob(): it follows the links, which point at /lib/... on the host or nowhere
    return sorted(f"etc/systemd/system/{d.name}/{unit}" for d in base.iterdir()
                  if d.name.endswith(".wants") and not d.is_symlink() and d.is_dir()
                  and (d / unit).is_symlink())


def networkd_only(root: Path) -> dict[str, list[str]]:
    """Disable the units networkd makes redundant, if networkd is enabled; what was removed."""
    if not _enabled_links(root, "systemd-networkd.service"):
        return {}
    return _disable(root, REDUNDANT_WITH_NETWORKD)


def minimal_server(root: Path) -> dict[str, list[str]]:
    """Disable what a minimal server should not spend boot time on (see the tables above)."""
    return {**networkd_only(root), **_disable(root, NOT_FOR_A_MINIMAL_SERVER)}


def _disable(root: Path, units) -> dict[str, list[str]]:
    """Remove every enablement link of ``units``; the links removed, by unit."""
    removed: dict[str, list[str]] = {}
    for unit in units:
        links = _enabled_links(root, unit)
        for link in links:
            rootfs.remove(root, link)
        if links:
            removed[unit] = links
    return removed
