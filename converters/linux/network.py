"""Networking after the move: the NIC is virtio-net now, with another driver, often another PCI
path and so another predictable name; virt-v2v leaves this alone (its won't-fix #62/#99).

* udev rules binding a name to the old MAC (70-persistent-net.rules) are dropped: a new MAC
  would get eth1 and the configured eth0 would never appear.
* Every network configuration the guest may use is read for the interface it binds to: ifupdown
  (``iface NAME``), netplan (an ``ethernets`` id, ``match: name``, ``set-name``), NetworkManager
  keyfiles (``interface-name=``) and systemd-networkd ``.network`` files (``[Match] Name=``).
  Exactly one interface named, in any of them: the virtio NIC is given that name by a systemd
  .link file (matched by the source MAC when the VM description kept one, else by the
  virtio_net driver), so its configuration, static or DHCP, applies unchanged: "moved".
* A configuration bound only by MAC works when the VM description kept that MAC (the domain XML
  keeps it); otherwise the report names the MAC for the new NIC. Name patterns (``en*``) match
  virtio's names too and are left alone.
* Several interfaces named: which virtio NIC is which cannot be told; nothing is guessed and the
  report says so.
"""

from __future__ import annotations

import configparser
import re

import yaml

from converters.linux.edits import FileEdit, edit

RULES = ("/etc/udev/rules.d/70-persistent-net.rules", "/etc/udev/rules.d/75-persistent-net-generator.rules")
LINK = "/etc/systemd/network/10-ironforge-virtio-nic.link"
_STANZA = re.compile(r"^\s*(?:iface|auto|allow-hotplug|allow-auto)\s+(.*)$", re.M)
_IFACE = re.compile(r"^\s*iface\s+(\S+)\s+(inet6?)\s+(\S+)", re.M)
_IFNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")   # what the kernel accepts, less the odd ones
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$")
NETPLAN, NM, NETWORKD = "/etc/netplan/", "/etc/NetworkManager/system-connections/", "/etc/systemd/network/"


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


def _netplan(text: str) -> tuple[list[str], list[str]]:
    """(interface names, MACs) the ethernets of a netplan file bind to."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return [], []
    eths = ((doc or {}).get("network") or {}).get("ethernets") if isinstance(doc, dict) else None
    names, macs = [], []
    for ident, cfg in (eths.items() if isinstance(eths, dict) else []):
        cfg = cfg if isinstance(cfg, dict) else {}
        match = cfg.get("match") if isinstance(cfg.get("match"), dict) else None
        if cfg.get("set-name"):
            names.append(str(cfg["set-name"]))
        elif match is None:
            names.append(str(ident))
        elif match.get("name"):
            names.append(str(match["name"]))
        elif match.get("macaddress"):
            macs.append(str(match["macaddress"]))
    return names, macs


def _ini(text: str) -> configparser.ConfigParser | None:
    cp = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    cp.optionxform = str            # keys are case-sensitive in both formats
    try:
        cp.read_string(text)
    except configparser.Error:
        return None
    return cp


def _nm_keyfile(text: str) -> tuple[list[str], list[str]]:
    cp = _ini(text)
    if cp is None or cp.get("connection", "type", fallback="") not in ("ethernet", "802-3-ethernet"):
        return [], []
    name = cp.get("connection", "interface-name", fallback="")
    mac = cp.get("ethernet", "mac-address", fallback="") or cp.get("802-3-ethernet", "mac-address", fallback="")
    return ([name] if name else []), ([mac] if mac and not name else [])


def _networkd(text: str) -> tuple[list[str], list[str]]:
    cp = _ini(text)
    if cp is None or not cp.has_section("Match"):
        return [], []
    names = cp.get("Match", "Name", fallback="").split()
    macs = cp.get("Match", "MACAddress", fallback="").split()
    return names, (macs if not names else [])


def bindings(files: dict[str, str | None]) -> dict:
    """What each configuration binds to: {"names": {name: [paths]}, "macs": {mac: [paths]},
    "patterns": {pattern: [paths]}}. A name with a glob character is a pattern."""
    out: dict[str, dict[str, list[str]]] = {"names": {}, "macs": {}, "patterns": {}}

    def add(path: str, names: list[str], macs: list[str]) -> None:
        for n in names:
            kind = "names" if _IFNAME.match(n) else "patterns" if re.search(r"[*?\[]", n) else None
            if kind:
                out[kind].setdefault(n, []).append(path)
        for m in macs:
            if _MAC.match(m):
                out["macs"].setdefault(m.lower(), []).append(path)

    for path, text in sorted(files.items()):
        if text is None:
            continue
        if path == "/etc/network/interfaces" or path.startswith("/etc/network/interfaces.d/"):
            add(path, list(ifupdown_interfaces(text)), [])
        elif path.startswith(NETPLAN) and path.endswith((".yaml", ".yml")):
            add(path, *_netplan(text))
        elif path.startswith(NM) and path.endswith(".nmconnection"):
            add(path, *_nm_keyfile(text))
        elif path.startswith(NETWORKD) and path.endswith(".network"):
            add(path, *_networkd(text))
    return out


def _method(path: str, ifaces: dict[str, str], name: str) -> str:
    if name in ifaces:
        return ifaces[name]
    return ("netplan" if path.startswith(NETPLAN) else "NetworkManager" if path.startswith(NM)
            else "systemd-networkd")


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
              if k.startswith((NETPLAN, NM, NETWORKD)) and files.get(k) is not None}
    bound = bindings(files)
    decision: dict = {"ifupdown": ifaces, "other_config": sorted(others), "bound": bound}
    mac = macs[0] if len(macs) == 1 else None
    names = bound["names"]
    if len(names) == 1:
        name, paths = next(iter(names.items()))
        method = _method(paths[0], ifaces, name)
        edits.append(edit(files, LINK, link_file(name, mac),
                          f"the virtio NIC is named {name} (matched by "
                          f"{'MAC ' + mac if mac else 'driver virtio_net'}), so the configuration of "
                          f"{name} in {', '.join(paths)} ({method}) applies to it"))
        decision.update(action="moved", interface=name, method=method, files=paths,
                        match=f"MACAddress={mac}" if mac else "Driver=virtio_net")
    elif len(names) > 1:
        decision.update(action="unchanged", reason=f"{len(names)} interfaces configured "
                        f"({', '.join(sorted(names))}); which virtio NIC is which cannot be told, check by hand")
    elif bound["macs"]:
        kept = [m for m in bound["macs"] if mac and m == mac.lower()]
        if kept:
            decision.update(action="unchanged", reason=f"configuration matches MAC {kept[0]}, which the VM "
                            "description keeps for the virtio NIC")
        else:
            listed = ", ".join(f"{m} ({', '.join(p)})" for m, p in sorted(bound["macs"].items()))
            decision.update(action="unchanged", reason=f"configuration bound to MAC {listed}, which the VM "
                            "description does not give: set that MAC on the virtio NIC, or rebind by hand")
    else:
        decision.update(action="unchanged", reason="no interface configured by name; "
                        + ("the configuration matches by name pattern (" + ", ".join(sorted(bound["patterns"]))
                           + "), which virtio's names fit" if bound["patterns"] else
                           "netplan/NetworkManager/networkd configuration left as it is" if others else
                           "nothing to move"))
    return [e for e in edits if e is not None], decision
