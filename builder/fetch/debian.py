"""The Debian archive's signature chain: InRelease (gpgv) -> Release entries -> indexes -> files."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from builder.cache.store import Store
from builder.errors import SignatureError, UsageError
from builder.fetch.http import FetchOptions, fetch_unpinned, fetch_url
from builder.fetch.signature import debian_keyrings, verify_clearsigned
from builder.linux import releases

log = logging.getLogger("ironforge.fetch")

def _release(release: str | int) -> releases.Release:
    r = releases.find(release)
    if r is None:
        raise UsageError(f"unknown Debian release {release!r}",
                         hint=f"use one of {', '.join(sorted(releases.BY_NUMBER))} or "
                              f"{', '.join(sorted(releases.BY_CODENAME))}")
    return r


def suite_for(release: str | int) -> str:
    """'12' or 'bookworm' -> 'bookworm'."""
    return _release(release).codename


def number_for(release: str | int) -> str:
    """'bookworm' or '12' -> '12'."""
    return _release(release).number


@dataclass(frozen=True)
class VerifiedRelease:
    """A suite's Release file as signed in its InRelease, parsed."""

    mirror: str
    suite: str
    inrelease_sha256: str          # pin for cache keys: changes exactly when the archive changes
    inrelease_path: Path
    fields: dict[str, str]         # single-line fields (Origin, Suite, Codename, Date, …)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)   # path -> (sha256, size)

    def entry(self, path: str) -> tuple[str, int]:
        """(sha256, size) the signed Release lists for ``path`` (relative to dists/<suite>/)."""
        try:
            return self.files[path]
        except KeyError:
            raise SignatureError(
                f"{self.mirror}/dists/{self.suite}/Release does not list {path}",
                hint="the signed Release has no checksum for this file, so it cannot be trusted; "
                     "check the release and architecture") from None

    def url(self, path: str) -> str:
        return f"{self.mirror}/dists/{self.suite}/{path}"


def parse_release(text: str) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """Single-line fields and the SHA256 table of a Release file."""
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, int]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if current == "SHA256":
                parts = line.split()
                if len(parts) == 3 and len(parts[0]) == 64:
                    files[parts[2]] = (parts[0].lower(), int(parts[1]))
            continue
        name, _, value = line.partition(":")
        current = name.strip()
        if value.strip():
            fields[current] = value.strip()
    return fields, files


def inrelease(mirror: str, suite: str, store: Store, *, offline: bool = False,
              keyrings: tuple[Path, ...] | list[Path] | None = None, progress: bool = False,
              options: FetchOptions | None = None, session=None) -> VerifiedRelease:
    """Fetch ``dists/<suite>/InRelease`` (fresh unless offline), verify it with gpgv, parse it.

    ``suite`` may be a codename or a release number. ``keyrings`` overrides the Debian archive
    keyrings (tests sign fake archives with a throw-away key).
    """
    mirror = mirror.rstrip("/")
    # a number becomes its codename; any other word is taken as a suite name (tests' fake archives)
    known = releases.BY_NUMBER.get(str(suite).strip())
    suite = known.codename if known else str(suite).strip()
    url = f"{mirror}/dists/{suite}/InRelease"
    path = fetch_unpinned(store, url, offline=offline, progress=progress, options=options,
                          session=session)
    rings = tuple(keyrings) if keyrings else debian_keyrings()
    text = verify_clearsigned(path, rings, what=url)
    fields, files = parse_release(text)
    names = {fields.get("Suite"), fields.get("Codename")}
    if suite not in names:
        raise SignatureError(f"{url}: signed Release is for {fields.get('Codename') or fields.get('Suite')!r},"
                             f" not {suite!r}",
                             hint="the mirror serves another suite's Release here; check the mirror")
    until = fields.get("Valid-Until")
    if until:
        try:
            expired = parsedate_to_datetime(until) < datetime.now(timezone.utc)
        except (TypeError, ValueError):
            expired = False
        if expired:
            raise SignatureError(f"{url}: Release expired on {until}",
                                 hint="the mirror is stale; use another mirror")
    if not files:
        raise SignatureError(f"{url}: signed Release lists no SHA256 checksums",
                             hint="the mirror serves a Release without SHA256; use another mirror")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    log.debug("verified %s (%d files listed)", url, len(files))
    return VerifiedRelease(mirror=mirror, suite=suite, inrelease_sha256=sha, inrelease_path=path,
                           fields=fields, files=files)


def fetch_listed(rel: VerifiedRelease, path: str, store: Store, *, offline: bool = False,
                 progress: bool = False, options: FetchOptions | None = None,
                 session=None) -> Path:
    """A file under dists/<suite>/ whose sha256 the signed Release lists, fetched and checked."""
    sha, _size = rel.entry(path)
    return fetch_url(store, rel.url(path), sha256=sha, offline=offline, progress=progress,
                     options=options, session=session)


def parse_sha256sums(text: str) -> dict[str, str]:
    """'hex  ./path' lines -> {'path': hex} (leading './' dropped)."""
    out = {}
    for line in text.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and len(parts[0]) == 64:
            name = parts[1].strip().lstrip("*")
            out[name[2:] if name.startswith("./") else name] = parts[0].lower()
    return out
