"""A recipe's [[sources]]: each resolved to verified files in the download store."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import arch as archmod
from builder import hostpaths
from builder.cache.store import Store
from builder.errors import ChecksumError, FetchError, UsageError
from builder.fetch.debian import VerifiedRelease, inrelease, suite_for
from builder.fetch.http import FetchOptions, cached, check_digest, fetch_url
from builder.fetch.installer import fetch_installer

log = logging.getLogger("ironforge.fetch")

DEFAULT_MIRROR = "http://deb.debian.org/debian"
_ROLE_SUFFIX = {"kernel": "kernel", "initrd": "initrd", "iso": "iso"}


@dataclass(frozen=True)
class FetchedFile:
    source: str          # the [[sources]] name
    name: str            # logical file name: "N", or "N.kernel"/"N.initrd"/"N.iso" for installers
    path: Path           # in the download store
    sha256: str
    size: int
    url: str             # where it comes from (file:// for a local path)
    verified_by: str     # what proves the bytes

    def as_data(self) -> dict[str, Any]:
        return {"url": self.url, "sha256": self.sha256, "size": self.size,
                "verified_by": self.verified_by}


def source_kind(src: dict) -> str:
    kinds = [k for k in ("url", "path", "debian_installer") if src.get(k)]
    if len(kinds) != 1:
        raise UsageError(f"source {src.get('name')!r} needs exactly one of url, path, "
                         f"debian_installer (got {', '.join(kinds) or 'none'})")
    return kinds[0]


def local_path(recipe, src: dict) -> Path:
    """A path source, relative to the recipe file's directory (cwd for a recipe without file),
    resolved, and refused (UsageError) outside it unless an --allow-host-path covers it."""
    base = Path(recipe.path).parent if getattr(recipe, "path", None) else Path.cwd()
    return hostpaths.resolve(str(src["path"]), base, getattr(recipe, "host_paths", ()),
                             key=f"sources {src.get('name')!r} path",
                             recipe=str(getattr(recipe, "path", None) or getattr(recipe, "name", "recipe")))


def installer_params(recipe, src: dict) -> dict[str, str]:
    di = src["debian_installer"]
    arch_word = di.get("arch") or recipe.family_arch
    return {"release": str(di["release"]),
            "arch": archmod.family_word("debian", arch_word),
            "image": di.get("image") or "netboot",
            "mirror": (di.get("mirror") or recipe.get("build.mirror", None) or DEFAULT_MIRROR)
            .rstrip("/")}


def _pinned_release(store: Store, p: dict[str, str], pin: dict | None, keyrings) -> VerifiedRelease | None:
    """The InRelease the cache key was computed from, re-verified from the store (no network),
    or None when there is no pin. A different stored copy means another build refreshed it
    since: building from it would not match the key, so stop."""
    if not pin or "inrelease_sha256" not in pin:
        return None
    rel = inrelease(p["mirror"], suite_for(p["release"]), store, offline=True, keyrings=keyrings)
    if rel.inrelease_sha256 != pin["inrelease_sha256"]:
        raise FetchError(f"{rel.url('InRelease')} changed while this build ran (keyed on "
                         f"{pin['inrelease_sha256'][:12]}…, now {rel.inrelease_sha256[:12]}…)",
                         hint="the archive was updated meanwhile; run the build again")
    return rel


def fetch_sources(store: Store, recipe, *, offline: bool = False, progress: bool = False,
                  options: FetchOptions | None = None, keyrings=None,
                  pins: dict[str, Any] | None = None) -> list[FetchedFile]:
    """Every file the recipe's sources name, verified, in recipe order.

    ``pins`` are the fetch stage's cache pins: an installer source pinned to an InRelease is
    resolved from that very file (already fetched and stored when the pin was computed).
    ``keyrings`` overrides the Debian archive keyrings (tests only).
    """
    out: list[FetchedFile] = []
    for src in recipe.get("sources", None) or []:
        name = src["name"]
        kind = source_kind(src)
        if kind == "url":
            sha256 = check_digest("sha256", src.get("sha256"))
            sha512 = check_digest("sha512", src.get("sha512"))
            path = fetch_url(store, src["url"], sha256=sha256, sha512=sha512, offline=offline,
                             progress=progress, options=options)
            out.append(FetchedFile(name, name, path, path.name, path.stat().st_size, src["url"],
                                   "recipe sha256" if sha256 else "recipe sha512"))
        elif kind == "path":
            out.append(import_local(store, name, local_path(recipe, src),
                                    sha256=check_digest("sha256", src.get("sha256")),
                                    sha512=check_digest("sha512", src.get("sha512"))))
        else:
            p = installer_params(recipe, src)
            rel = _pinned_release(store, p, (pins or {}).get(name), keyrings)
            for f in fetch_installer(store, mirror=p["mirror"], release=p["release"], arch=p["arch"],
                                     image=p["image"], offline=offline, progress=progress,
                                     options=options, keyrings=keyrings, release_info=rel):
                out.append(FetchedFile(name, f"{name}.{_ROLE_SUFFIX[f.role]}", f.path, f.sha256,
                                       f.size, f.url, f.verified_by))
    return out


def import_local(store: Store, name: str, path: Path, *, sha256: str | None = None,
                 sha512: str | None = None) -> FetchedFile:
    """A local file, hashed; copied into the store unless a file with its digest is there."""
    if not path.is_file():
        raise FetchError(f"source {name!r}: local file {path} does not exist",
                         hint="paths are relative to the recipe file's directory")
    got, got512 = _hash_local(path, sha512 is not None)
    if sha256 and got != sha256:
        raise ChecksumError(str(path), "sha256", sha256, got,
                            hint="the local file changed, or the recipe's digest is wrong")
    if sha512 and got512 != sha512:
        raise ChecksumError(str(path), "sha512", sha512, got512,
                            hint="the local file changed, or the recipe's digest is wrong")
    final = cached(store, sha256=got) or _copy_in(store, name, path, got)
    verified = "recipe sha256" if sha256 else "recipe sha512" if sha512 else "local file (hashed)"
    return FetchedFile(name, name, final, got, final.stat().st_size, path.resolve().as_uri(),
                       verified)


def _hash_local(path: Path, want512: bool) -> tuple[str, str | None]:
    h256, h512 = hashlib.sha256(), (hashlib.sha512() if want512 else None)
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h256.update(b)
            if h512 is not None:
                h512.update(b)
    return h256.hexdigest(), (h512.hexdigest() if h512 is not None else None)


def _copy_in(store: Store, name: str, path: Path, sha256: str) -> Path:
    """Copy ``path`` into the store, hashing the copy: the file may change while we read it."""
    with open(path, "rb") as src:
        return store.ingest(src, sha256, what=str(path),
                            hint="the file changed while it was being read; try again")
