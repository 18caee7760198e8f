"""Networking after the move: the NIC is virtio-net now, with another driver, often another PCI
path and so another predictable name; virt-v2v leaves this alone (its won't-fix #62/#99).

* udev rules binding a name to the old MAC (70-persistent-net.rules) are dropped: a new MAC
  would get eth1 and the configured eth0 would never appear.
* ifupdown with exactly one configured interface: the virtio NIC is given that interface's name
  by a systemd .link file (matched by the source MAC when the VM description kept one, else by
  the virtio_net driver), so its configuration, static or DHCP, applies unchanged: "moved".
* no interface configured anywhere, or several: nothing is guessed; the report says so.
"""

from __future__ import annotations

import re

from converters.linux.edits import FileEdit, edit

RULES = ("/etc/udev/rules.d/70-persistent-net.rules", "/etc/udev/rules.d/75-persistent-net-generator.rules")
LINK = "/etc/systemd/network/10-ironforge-virtio-nic.link"
_STANZA = re.compile(r"^\s*(?:iface|auto|allow-hotplug|allow-auto)\s+(.*)$", re.M)
_IFACE = re.compile(r"^\s*iface\s+(\S+)\s+(inet6?)\s+(\S+)", re.M)
_IFNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")   # what the kernel accepts, less the odd ones


def ifupdown_interfaces(text: str) -> dict[str, str]:
    """Configured interfaces (not lo) -> method (dhcp, static, manual…) of their first family."""
    out: dict[str, str] = {}
    for m in _IFACE.finditer(text or ""):
        if m.group(1) != "lo" and _IFNAME.match(m.group(1)):
            out.setdefault(m.group(1), m.group(3))
    return out


def drop_mac_rules(text: str) -> tuple[str, int]:
    keep, dropped = [], 0
    for line in text.splitlines(keepends=True):
        if "ATTR{address}" in line and "NAME=" in line:
            dropped += 1
            continue
        keep.append(line)
    return "".join(keep), dropped


def link_file(name: str, mac: str | None) -> str:
    match = f"MACAddress={mac}" if mac else "Driver=virtio_net"
    return ("# ironforge convert: the virtio NIC keeps the name the guest's configuration uses\n"
            f"[Match]\n{match}\n\n[Link]\nName={name}\n")


def plan(files: dict[str, str | None], macs: list[str]) -> tuple[list[FileEdit], dict]:
    """Edits, and the decision for the report."""
    edits: list[FileEdit | None] = []
    for path in RULES:
        text = files.get(path)
        if text is None:
            continue
        new, n = drop_mac_rules(text)
        if n:
            edits.append(edit(files, path, new, f"{n} MAC-bound interface name rule(s) dropped: the virtio "
                              "NIC would get a new name and the configured one would never appear"))
    ifaces: dict[str, str] = {}
    for path, text in files.items():
        if path == "/etc/network/interfaces" or path.startswith("/etc/network/interfaces.d/"):
            for k, v in ifupdown_interfaces(text or "").items():
                ifaces.setdefault(k, v)
    others = {k: bool(files.get(k)) for k in files
              if k.startswith(("/etc/netplan/", "/etc/NetworkManager/system-connections/",
                               "/etc/systemd/network/")) and files.get(k) is not None}
    decision: dict = {"ifupdown": ifaces, "other_config": sorted(others)}
    mac = macs[0] if len(macs) == 1 else None
    if len(ifaces) == 1:
        name, method = next(iter(ifaces.items()))
        edits.append(edit(files, LINK, link_file(name, mac),
                          f"the virtio NIC is named {name} (matched by "
                          f"{'MAC ' + mac if mac else 'driver virtio_net'}), so its ifupdown "
                          f"configuration ({method}) applies to it"))
        decision.update(action="moved", interface=name, method=method,
                        match=f"MACAddress={mac}" if mac else "Driver=virtio_net")
    elif not ifaces:
        decision.update(action="unchanged", reason="no ifupdown interface configured; "
                        + ("netplan/NetworkManager/networkd configuration left as it is (it matches by name "
                           "pattern or MAC, which virtio keeps)" if others else "nothing to move"))
    else:
        decision.update(action="unchanged", reason=f"{len(ifaces)} interfaces configured "
                        f"({', '.join(sorted(ifaces))}); which virtio NIC is which cannot be told, check by hand")
    return [e for e in edits if e is not None], decision
