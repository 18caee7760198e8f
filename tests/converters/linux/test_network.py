"""converters/linux/network.py: which interface each kind of network configuration binds to,
and what the conversion does about it (a .link naming the virtio NIC, or a reason)."""

from __future__ import annotations

import configparser

import pytest

from converters.linux import network

MAC = "52:54:00:12:34:56"

NETPLAN_ID = "network:\n  version: 2\n  ethernets:\n    ens192:\n      dhcp4: true\n"
NETPLAN_SETNAME = ("network:\n  version: 2\n  ethernets:\n    lan:\n      match:\n        macaddress: \"00:50:56:aa:bb:cc\"\n"
                   "      set-name: lan0\n      addresses: [10.0.0.5/24]\n")
NETPLAN_MAC = "network:\n  ethernets:\n    id0:\n      match:\n        macaddress: 00:50:56:AA:BB:CC\n      dhcp4: true\n"
NETPLAN_GLOB = "network:\n  ethernets:\n    all:\n      match:\n        name: \"en*\"\n      dhcp4: true\n"
NM_NAMED = "[connection]\nid=Wired\ntype=ethernet\ninterface-name=enp0s3\n\n[ipv4]\nmethod=auto\n"
NM_MAC = "[connection]\nid=Wired\ntype=802-3-ethernet\n\n[ethernet]\nmac-address=08:00:27:11:22:33\n"
NM_WIFI = "[connection]\nid=Home\ntype=wifi\ninterface-name=wlan0\n"
NETWORKD = "[Match]\nName=eth1\n\n[Network]\nAddress=192.0.2.7/24\n"


def link_of(edits) -> str | None:
    return next((e.new for e in edits if e.path == network.LINK), None)


@pytest.mark.parametrize("path, text, name, method", [
    ("/etc/netplan/50-cloud-init.yaml", NETPLAN_ID, "ens192", "netplan"),
    ("/etc/netplan/01-lan.yaml", NETPLAN_SETNAME, "lan0", "netplan"),
    ("/etc/NetworkManager/system-connections/Wired.nmconnection", NM_NAMED, "enp0s3", "NetworkManager"),
    ("/etc/systemd/network/20-wired.network", NETWORKD, "eth1", "systemd-networkd"),
])
def test_one_named_interface_in_any_configuration_is_moved(path, text, name, method):
    edits, d = network.plan({path: text}, [MAC])
    assert d["action"] == "moved" and (d["interface"], d["method"], d["files"]) == (name, method, [path])
    link = configparser.ConfigParser()
    link.optionxform = str
    link.read_string(link_of(edits))
    assert dict(link["Match"]) == {"MACAddress": MAC} and dict(link["Link"]) == {"Name": name}
    # no MAC kept by the description (a bare disk): the driver is matched instead
    edits, d = network.plan({path: text}, [])
    assert "Driver=virtio_net" in link_of(edits) and d["match"] == "Driver=virtio_net"


def test_mac_bound_configuration_works_only_with_the_kept_mac():
    f = {"/etc/netplan/01.yaml": NETPLAN_MAC, "/etc/NetworkManager/system-connections/W.nmconnection": NM_MAC}
    edits, d = network.plan(f, [])
    assert link_of(edits) is None and d["action"] == "unchanged"
    assert "00:50:56:aa:bb:cc (/etc/netplan/01.yaml)" in d["reason"] and "set that MAC" in d["reason"]
    edits, d = network.plan({"/etc/netplan/01.yaml": NETPLAN_MAC}, ["00:50:56:aa:bb:cc"])
    assert link_of(edits) is None and "which the VM description keeps" in d["reason"]


def test_patterns_wifi_and_several_names_are_not_guessed():
    _, d = network.plan({"/etc/netplan/all.yaml": NETPLAN_GLOB,
                         "/etc/NetworkManager/system-connections/Home.nmconnection": NM_WIFI}, [MAC])
    assert d["action"] == "unchanged" and "name pattern (en*)" in d["reason"]
    edits, d = network.plan({"/etc/netplan/a.yaml": NETPLAN_ID, "/etc/systemd/network/b.network": NETWORKD}, [MAC])
    assert link_of(edits) is None and "2 interfaces configured (ens192, eth1)" in d["reason"]
    # ifupdown and netplan naming the same interface: one name, moved
    edits, d = network.plan({"/etc/network/interfaces": "auto ens192\niface ens192 inet static\n",
                             "/etc/netplan/a.yaml": NETPLAN_ID}, [])
    assert d["action"] == "moved" and d["method"] == "static" and len(d["files"]) == 2


@pytest.mark.parametrize("path, text", [
    ("/etc/netplan/bad.yaml", "network: [ethernets\n"),
    ("/etc/netplan/list.yaml", "- just\n- a list\n"),
    ("/etc/netplan/odd.yaml", "network:\n  ethernets:\n    'eth0;rm -rf /':\n      dhcp4: true\n"),
    ("/etc/NetworkManager/system-connections/x.nmconnection", "no section header\n"),
    ("/etc/systemd/network/x.network", "[Match]\nName=eth0\n[Match\n"),
    ("/etc/netplan/big.yaml", "network:\n  ethernets:\n" + "".join(f"    e{i}: {{}}\n" for i in range(3))),
])
def test_malformed_or_hostile_configuration_binds_nothing_it_cannot_name(path, text):
    edits, d = network.plan({path: text}, [MAC])
    names = d["bound"]["names"]
    assert all(network._IFNAME.match(n) for n in names)
    assert (link_of(edits) is not None) == (len(names) == 1)
