"""Foreign hypervisors' guest tools, under their Debian and RHEL names: useless under KVM, and
some (open-vm-tools' vmtoolsd, hv_kvp_daemon) fail at every boot or hang waiting for their device.
Removed with the guest's own package manager inside the appliance; absent packages are skipped.

Parallels Tools are no package: their installer copies them under /usr/lib/parallels-tools and
keeps its own uninstaller there, which is what removes them (``install -r``, as virt-v2v runs it)."""

from __future__ import annotations

import re

from converters.linux.edits import GuestRun

# exact names, plus prefixes (virtualbox-guest-utils, -x11, -dkms, …)
NAMES = ("open-vm-tools", "open-vm-tools-desktop", "open-vm-tools-sdmp", "open-vm-tools-dev",
         "hyperv-daemons", "hypervkvpd", "hypervvssd", "hypervfcopyd", "xe-guest-utilities",
         "xenstore-utils", "vmware-tools", "VMwareTools")
PREFIXES = ("virtualbox-guest-", "kmod-vmware-tools", "kmod-xenpv", "vmware-tools-")
HYPERVISOR = {"open-vm": "VMware", "vmware": "VMware", "VMware": "VMware", "hyperv": "Hyper-V",
              "virtualbox": "VirtualBox", "xe-guest": "Citrix Xen", "xenstore": "Xen", "kmod-xenpv": "Xen"}

REMOVE_LIMIT = 900
PARALLELS_UNINSTALL = "/usr/lib/parallels-tools/install"


def foreign(installed: list[str]) -> list[str]:
    return sorted(p for p in installed if p in NAMES or p.startswith(PREFIXES))


def hypervisor(pkg: str) -> str:
    return next((h for k, h in HYPERVISOR.items() if pkg.startswith(k)), "foreign")


def plan(installed: list[str], package_format: str, parallels_tools: bool = False) -> list[GuestRun]:
    runs = [GuestRun((PARALLELS_UNINSTALL, "-r"), "Parallels Tools (installed by their own script, not a "
                     "package), useless under KVM: their uninstaller", REMOVE_LIMIT)] if parallels_tools else []
    pkgs = foreign(installed)
    if not pkgs:
        return runs
    why = "; ".join(f"{p}: {hypervisor(p)} guest tools, useless under KVM" for p in pkgs)
    if package_format == "deb":
        # noninteractive: a debconf prompt would hang in the appliance until the limit
        argv = ("env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--purge", *pkgs)
    elif package_format == "rpm":
        argv = ("rpm", "-e", "--allmatches", *pkgs)
    else:
        return runs
    return [*runs, GuestRun(argv, why, REMOVE_LIMIT)]


_SAFE = re.compile(r"^[A-Za-z0-9.+_-]+$")


def safe_names(pkgs: list[str]) -> list[str]:
    """Package names from a hostile dpkg status go on a command line: only plain names."""
    return [p for p in pkgs if _SAFE.match(p)]
