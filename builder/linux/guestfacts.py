"""Facts about a Debian guest for the manifest: installed packages, kernels, os-release."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str


def parse_dpkg_status(text: str) -> list[Package]:
    """Installed packages from /var/lib/dpkg/status (stanzas whose Status ends 'installed')."""
    out: list[Package] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if not line or line[0] in " \t":
                continue
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
        if fields.get("Package") and fields.get("Status", "").split()[-1:] == ["installed"]:
            out.append(Package(fields["Package"], fields.get("Version", ""), fields.get("Architecture", "")))
    return sorted(out, key=lambda p: (p.name, p.arch))


def parse_os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        try:
            parts = shlex.split(v)
            out[k.strip()] = parts[0] if parts else ""
        except ValueError:
            out[k.strip()] = v.strip().strip('"')
    return out


def collect(g, kernels: list[str]) -> dict:
    """Read the facts from a mounted guest (one handle, no extra launch)."""
    status = g.cat("/var/lib/dpkg/status") if g.is_file("/var/lib/dpkg/status") else ""
    pkgs = parse_dpkg_status(status)
    osr = {}
    for p in ("/etc/os-release", "/usr/lib/os-release"):
        if g.is_file(p, followsymlinks=True):
            osr = parse_os_release(g.cat(p))
            break
    keep = ("ID", "VERSION_ID", "VERSION_CODENAME", "PRETTY_NAME", "NAME", "VERSION")
    debian_version = g.cat("/etc/debian_version").strip() if g.is_file("/etc/debian_version") else None
    return {"os_release": {k: osr[k] for k in keep if k in osr},
            "debian_version": debian_version,
            "kernels": kernels,
            "packages": [asdict(p) for p in pkgs],
            "package_count": len(pkgs)}
