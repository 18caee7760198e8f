"""Which Windows is this: the version table and the identification rules (spec §1.3).

Detect, don't trust: Debian 12's libguestfs calls every 10.0 client "win10" and Server 2025
"win2k16", so the osinfo id is computed here from what the SOFTWARE hive says
(CurrentMajor/MinorVersionNumber or CurrentVersion, CurrentBuildNumber, InstallationType,
ProductName). Real Windows 11 still says "Windows 10 …" in ProductName: only the build tells.

Arches are the internal pair (builder.arch: ``x86_64``/``i686``); ``word`` gives Windows' own
(``amd64``/``x86``) for virtio-win folders and answer files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder import arch as archmod
from builder.errors import UsageError

X86_64, I686 = archmod.X86_64, archmod.I686
BOTH = (X86_64, I686)
AMD64_ONLY = (X86_64,)

# Build numbers that separate versions sharing NT 10.0 (Microsoft release information).
WIN11_MIN_BUILD = 22000
SERVER_BUILDS = ((26100, "win2k25"), (20348, "win2k22"), (17763, "win2k19"), (14393, "win2k16"))


@dataclass(frozen=True)
class WindowsVersion:
    osinfo: str                    # libosinfo short id, computed here (e.g. "win11")
    name: str                      # for people: "Windows Server 2022"
    major: int
    minor: int
    server: bool
    virtio_os: str                 # the virtio-win OS folder name (lowercase; folders are mixed-case)
    arches: tuple[str, ...]        # internal arch words Microsoft ships it for
    release: str | None = None     # recipe release word ("10", "server-2022"), None if not buildable
    min_build: int | None = None   # lowest CurrentBuildNumber of this version, where it matters

    @property
    def driver_database(self) -> bool:
        """Windows 8 / Server 2012 and later keep boot drivers in SYSTEM\\DriverDatabase;
        earlier ones in <CCS>\\Control\\CriticalDeviceDatabase."""
        return (self.major, self.minor) >= (6, 2)

    @property
    def nt(self) -> str:
        return f"{self.major}.{self.minor}"

    def supports(self, arch: str) -> bool:
        return archmod.normalise(arch) in self.arches

    def to_dict(self) -> dict:
        return {"osinfo": self.osinfo, "name": self.name, "nt": self.nt, "server": self.server,
                "virtio_os": self.virtio_os, "arches": list(self.arches),
                "driver_database": self.driver_database, "release": self.release}


def _v(osinfo, name, major, minor, server, virtio_os, arches, release=None, min_build=None):
    return WindowsVersion(osinfo, name, major, minor, server, virtio_os, arches, release, min_build)


VERSIONS: tuple[WindowsVersion, ...] = (
    _v("winxp", "Windows XP", 5, 1, False, "xp", BOTH),
    _v("win2k3", "Windows Server 2003", 5, 2, True, "2k3", BOTH),
    _v("win2k3r2", "Windows Server 2003 R2", 5, 2, True, "2k3", BOTH),
    _v("winvista", "Windows Vista", 6, 0, False, "2k8", BOTH),
    _v("win2k8", "Windows Server 2008", 6, 0, True, "2k8", BOTH),
    _v("win7", "Windows 7", 6, 1, False, "w7", BOTH, "7"),
    _v("win2k8r2", "Windows Server 2008 R2", 6, 1, True, "2k8r2", AMD64_ONLY),
    _v("win8", "Windows 8", 6, 2, False, "w8", BOTH),
    _v("win2k12", "Windows Server 2012", 6, 2, True, "2k12", AMD64_ONLY),
    _v("win8.1", "Windows 8.1", 6, 3, False, "w8.1", BOTH, "8.1"),
    _v("win2k12r2", "Windows Server 2012 R2", 6, 3, True, "2k12r2", AMD64_ONLY),
    _v("win10", "Windows 10", 10, 0, False, "w10", BOTH, "10"),
    _v("win11", "Windows 11", 10, 0, False, "w11", AMD64_ONLY, "11", WIN11_MIN_BUILD),
    _v("win2k16", "Windows Server 2016", 10, 0, True, "2k16", AMD64_ONLY, "server-2016", 14393),
    _v("win2k19", "Windows Server 2019", 10, 0, True, "2k19", AMD64_ONLY, "server-2019", 17763),
    _v("win2k22", "Windows Server 2022", 10, 0, True, "2k22", AMD64_ONLY, "server-2022", 20348),
    _v("win2k25", "Windows Server 2025", 10, 0, True, "2k25", AMD64_ONLY, "server-2025", 26100),
)

_BY_OSINFO = {v.osinfo: v for v in VERSIONS}
_BY_RELEASE = {v.release: v for v in VERSIONS if v.release}


class UnknownWindowsVersion(UsageError):
    """A Windows version word or NT version this table does not know."""


def by_osinfo(osinfo: str) -> WindowsVersion:
    try:
        return _BY_OSINFO[osinfo.lower()]
    except KeyError:
        raise UnknownWindowsVersion(f"unknown Windows osinfo id {osinfo!r}",
                                    hint="known: " + ", ".join(_BY_OSINFO)) from None


def by_release(word: str) -> WindowsVersion:
    """The version a recipe's ``os.release`` names: "7", "10", "11", "server-2019", …"""
    key = str(word).strip().lower()
    key = {"2016": "server-2016", "2019": "server-2019", "2022": "server-2022",
           "2025": "server-2025"}.get(key, key)
    try:
        return _BY_RELEASE[key]
    except KeyError:
        raise UnknownWindowsVersion(f"unknown Windows release {word!r}",
                                    hint="known: " + ", ".join(_BY_RELEASE)) from None


def releases() -> list[str]:
    return list(_BY_RELEASE)


def is_server(installation_type: str | None, product_name: str | None) -> bool:
    """InstallationType is "Client", "Server" or "Server Core"; older hives lack it, then the
    product name is the only witness."""
    if installation_type:
        return installation_type.strip().lower().startswith("server")
    return "server" in (product_name or "").lower()


def identify(major: int, minor: int, build: int | None, installation_type: str | None,
             product_name: str | None) -> WindowsVersion:
    """The version of an installed Windows from its SOFTWARE hive facts (spec §1.3)."""
    server = is_server(installation_type, product_name)
    name = product_name or ""
    if (major, minor) == (5, 1):
        return _BY_OSINFO["winxp"]
    if (major, minor) == (5, 2):
        if "xp" in name.lower():
            return _BY_OSINFO["winxp"]
        return _BY_OSINFO["win2k3r2" if "R2" in name else "win2k3"]
    simple = {(6, 0): ("winvista", "win2k8"), (6, 1): ("win7", "win2k8r2"),
              (6, 2): ("win8", "win2k12"), (6, 3): ("win8.1", "win2k12r2")}
    if (major, minor) in simple:
        return _BY_OSINFO[simple[(major, minor)][1 if server else 0]]
    if (major, minor) == (10, 0):
        if not server:
            return _BY_OSINFO["win11" if (build or 0) >= WIN11_MIN_BUILD else "win10"]
        year = re.search(r"\b(2016|2019|2022|2025)\b", name)
        if year:
            return _BY_OSINFO[{"2016": "win2k16", "2019": "win2k19", "2022": "win2k22",
                               "2025": "win2k25"}[year.group(1)]]
        for threshold, osinfo in SERVER_BUILDS:     # a product name without the year
            if (build or 0) >= threshold:
                return _BY_OSINFO[osinfo]
        return _BY_OSINFO["win2k16"]
    raise UnknownWindowsVersion(
        f"Windows NT {major}.{minor} ({product_name or 'no product name'}) is not a version "
        "ironforge knows", hint="supported: NT 5.1 (XP) to 10.0 (Windows 11, Server 2025)")


def word(arch: str) -> str:
    """Windows' own word for an arch: 'x86_64' -> 'amd64', 'i686' -> 'x86'."""
    return archmod.family_word("windows", arch)
