"""The official Debian installer (netboot kernel+initrd, or mini.iso), verified through the archive.

Chain: dists/<suite>/InRelease (gpgv) -> Release lists main/installer-<arch>/current/images/SHA256SUMS
-> SHA256SUMS lists each image file. The files come from the images tree when the mirror serves
it; otherwise from the debian-installer-<N>-netboot-<arch> package, itself verified through
InRelease -> Release -> Packages index -> .deb sha256, and each extracted file is still checked
against the signed SHA256SUMS.
"""

from __future__ import annotations

import gzip
import logging
import lzma
from dataclasses import dataclass
from pathlib import Path

from builder.cache.store import Store
from builder.errors import FetchError, SignatureError, UsageError
from builder.fetch.deb import extract_verified
from builder.fetch.debian import (VerifiedRelease, fetch_listed, inrelease, number_for,
                                  parse_sha256sums, suite_for)
from builder.fetch.http import FetchOptions, HttpStatusError, cached, fetch_url

log = logging.getLogger("ironforge.fetch")

# role -> path in SHA256SUMS (relative to installer-<arch>/current/images/)
IMAGE_FILES = {
    "netboot": {"kernel": "netboot/debian-installer/{arch}/linux",
                "initrd": "netboot/debian-installer/{arch}/initrd.gz"},
    "mini.iso": {"iso": "netboot/mini.iso"},
}
# the netboot package holds images/<N>/<arch>/text/<same path below netboot/> (not mini.iso)
PACKAGE_ROOT = "usr/lib/debian-installer/images/{n}/{arch}/text"


@dataclass(frozen=True)
class InstallerFile:
    role: str            # "kernel" | "initrd" | "iso"
    path: Path           # in the download store
    sha256: str
    size: int
    url: str             # canonical location in the images tree
    verified_by: str


def images_dir(arch: str) -> str:
    return f"main/installer-{arch}/current/images"


def fetch_installer(store: Store, *, mirror: str, release: str, arch: str, image: str = "netboot",
                    offline: bool = False, progress: bool = False,
                    options: FetchOptions | None = None, keyrings=None,
                    release_info: VerifiedRelease | None = None) -> list[InstallerFile]:
    """Resolve, fetch and verify the installer files; returns one entry per role."""
    if image not in IMAGE_FILES:
        raise UsageError(f"unknown installer image {image!r}",
                         hint=f"use one of: {', '.join(IMAGE_FILES)}")
    mirror = mirror.rstrip("/")
    suite = suite_for(release)
    rel = release_info or inrelease(mirror, suite, store, offline=offline, keyrings=keyrings,
                                    progress=progress, options=options)
    sums_rel = f"{images_dir(arch)}/SHA256SUMS"
    if sums_rel not in rel.files:
        raise SignatureError(f"{rel.url('Release')} lists no installer for {arch} ({sums_rel})",
                             hint=f"Debian {number_for(suite)} has no {arch} installer; "
                                  "check the release and arch")
    sums = parse_sha256sums(fetch_listed(rel, sums_rel, store, offline=offline, options=options)
                            .read_text())
    chain = f"gpgv {suite}/InRelease > Release > {sums_rel}"
    wanted: dict[str, tuple[str, str]] = {}          # role -> (sums path, sha256)
    for role, tmpl in IMAGE_FILES[image].items():
        p = tmpl.format(arch=arch)
        if p not in sums:
            raise SignatureError(f"{rel.url(sums_rel)} does not list {p}",
                                 hint=f"this release has no {image} image for {arch}")
        wanted[role] = (p, sums[p])

    missing = {r: v for r, v in wanted.items() if cached(store, sha256=v[1]) is None}
    if missing and offline:
        urls = ", ".join(rel.url(f"{images_dir(arch)}/{p}") for p, _ in missing.values())
        raise FetchError(f"installer files not in the download cache and --offline forbids the "
                         f"network: {urls}", hint="run once without --offline to download them")
    for role, (p, sha) in list(missing.items()):
        try:
            fetch_url(store, rel.url(f"{images_dir(arch)}/{p}"), sha256=sha, progress=progress,
                      options=options)
            del missing[role]
        except HttpStatusError as exc:
            if exc.status not in (403, 404, 410):
                raise
            log.info("%s: images tree not served here (HTTP %d); using the installer package",
                     rel.url(f"{images_dir(arch)}/{p}"), exc.status)
            break
    if missing:
        if image != "netboot":
            raise FetchError(
                f"{rel.url(images_dir(arch))}/{IMAGE_FILES[image]['iso']}: HTTP 404 and the file is "
                f"not in the debian-installer-{number_for(suite)}-netboot-{arch} package",
                hint="this mirror does not serve the installer images tree; use "
                     "image = \"netboot\" or point the source's mirror at a complete Debian mirror")
        _from_package(store, rel, arch, missing, progress=progress, options=options)
    # verified_by names what proves the bytes (the signed SHA256SUMS), not how they travelled,
    # so it reads the same whether the files came from the images tree, the package or the cache

    out = []
    for role, (p, sha) in wanted.items():
        path = store.download_path(sha)
        out.append(InstallerFile(role=role, path=path, sha256=sha, size=path.stat().st_size,
                                 url=rel.url(f"{images_dir(arch)}/{p}"), verified_by=chain))
    return out


def _from_package(store: Store, rel: VerifiedRelease, arch: str, missing: dict[str, tuple[str, str]],
                  *, progress: bool, options: FetchOptions | None) -> None:
    n = number_for(rel.suite)
    pkg = f"debian-installer-{n}-netboot-{arch}"
    stanza = find_package(store, rel, pkg, arch, options=options)
    for k in ("Filename", "SHA256"):
        if k not in stanza:
            raise SignatureError(f"package index entry for {pkg} has no {k}",
                                 hint="the mirror's Packages index is malformed")
    deb = fetch_url(store, f"{rel.mirror}/{stanza['Filename']}", sha256=stanza["SHA256"],
                    progress=progress, options=options)
    root = PACKAGE_ROOT.format(n=n, arch=arch)
    members = {f"{root}/{p.removeprefix('netboot/')}": sha for p, sha in missing.values()}
    extract_verified(deb, members, store, what=f"{pkg} ({stanza.get('Version', '?')})")


def find_package(store: Store, rel: VerifiedRelease, name: str, arch: str, *,
                 options: FetchOptions | None = None) -> dict[str, str]:
    """The Packages stanza of ``name``, from an index whose sha256 the signed Release lists."""
    tried = []
    for sub in (f"main/binary-{arch}", "main/binary-all"):
        for ext, opener in ((".xz", lzma.decompress), (".gz", gzip.decompress), ("", bytes)):
            idx = f"{sub}/Packages{ext}"
            if idx not in rel.files:
                continue
            tried.append(idx)
            text = opener(fetch_listed(rel, idx, store, options=options).read_bytes())
            stanza = _stanza(text.decode("utf-8", "replace"), name)
            if stanza is not None:
                return stanza
            break   # same index in another compression holds the same entries
    raise FetchError(f"package {name} not found in {', '.join(tried) or 'any Packages index'} "
                     f"of {rel.mirror} {rel.suite}",
                     hint="the installer package is not in this release/arch on this mirror")


def _stanza(text: str, name: str) -> dict[str, str] | None:
    start = 0
    needle = f"Package: {name}\n"
    while True:
        i = text.find(needle, start)
        if i < 0:
            return None
        if i == 0 or text[i - 1] == "\n":
            break
        start = i + 1
    end = text.find("\n\n", i)
    block = text[i:end if end >= 0 else len(text)]
    fields = {}
    for line in block.splitlines():
        if line and line[0] not in " \t" and ":" in line:
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
    return fields
