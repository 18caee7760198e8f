"""Fetching sources: URLs pinned by digest, local files, and Debian installers verified through
the archive's signature chain, all into the content-addressed download store.

Public API (wired into ``ironforge fetch`` and the fetch stage):

    fetch_url(store, url, *, sha256=None, sha512=None, offline=False, progress=False,
              options=None) -> Path
    fetch_sources(store, recipe, *, offline=False, progress=False, options=None,
                  keyrings=None) -> list[FetchedFile]
    inrelease(mirror, suite, store, *, offline=False, keyrings=None, ...) -> VerifiedRelease
    fetch_installer(store, *, mirror, release, arch, image="netboot", offline=False, ...)
        -> list[InstallerFile]
"""

from builder.fetch.debian import VerifiedRelease, inrelease, suite_for
from builder.fetch.http import FetchOptions, HttpStatusError, fetch_unpinned, fetch_url
from builder.fetch.installer import InstallerFile, fetch_installer
from builder.fetch.sources import FetchedFile, fetch_sources

__all__ = ["FetchOptions", "FetchedFile", "HttpStatusError", "InstallerFile", "VerifiedRelease",
           "fetch_installer", "fetch_sources", "fetch_unpinned", "fetch_url", "inrelease",
           "suite_for"]
