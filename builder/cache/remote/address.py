"""``oci://HOST[:PORT]/REPO``: where a remote stage cache lives.

HTTPS unless the address says ``oci+http://`` (a loopback or otherwise trusted registry without
TLS must be an explicit choice: credentials and artifacts would cross the network in clear).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.errors import UsageError

# OCI distribution spec: repository name components, separated by '/'
_REPO = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:.]+\]")
HINT = "write oci://HOST[:PORT]/REPO (HTTPS), or oci+http://HOST[:PORT]/REPO for a registry without TLS"


@dataclass(frozen=True)
class RemoteAddress:
    scheme: str          # "https" or "http"
    host: str            # as written, brackets kept for IPv6
    port: int | None
    repo: str

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.hostport}/v2/{self.repo}"

    def __str__(self) -> str:
        return f"{'oci+http' if self.scheme == 'http' else 'oci'}://{self.hostport}/{self.repo}"


def parse(text: str, origin: str = "--cache-remote") -> RemoteAddress:
    """``origin`` names where the address was written, for the error (a flag, a variable, a file)."""
    m = re.fullmatch(r"(oci|oci\+http|oci\+https)://([^/]+)/(.+)", text.strip())
    if not m:
        raise UsageError(f"{origin} {text!r}: not an OCI registry address", hint=HINT)
    scheme = "http" if m.group(1) == "oci+http" else "https"
    netloc, repo = m.group(2), m.group(3).rstrip("/")
    if "@" in netloc:
        # never echo it: what is left of '@' is likely a password
        raise UsageError(f"{origin}: the address holds credentials (user@ or user:password@); "
                         "not shown", hint="put them in ~/.docker/config.json or IRONFORGE_REGISTRY_USER/"
                                           "IRONFORGE_REGISTRY_PASSWORD")
    hm = re.fullmatch(r"(.+?)(?::(\d{1,5}))?", netloc)
    host, port = hm.group(1), hm.group(2)
    if not _HOST.fullmatch(host) or (port is not None and not 0 < int(port) < 65536):
        raise UsageError(f"{origin} {text!r}: bad host or port", hint=HINT)
    if not _REPO.fullmatch(repo) or len(repo) > 255:
        raise UsageError(f"{origin} {text!r}: bad repository name {repo!r}",
                         hint="lower-case letters, digits, '.', '_', '-' and '/' between components")
    return RemoteAddress(scheme, host, int(port) if port else None, repo)
