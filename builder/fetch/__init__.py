"""Fetching sources: URLs pinned by digest, local files, and Debian installers verified through
the archive's signature chain, all into the content-addressed download store."""

from builder.fetch.debian import VerifiedRelease, inrelease, suite_for
from builder.fetch.http import FetchOptions, HttpStatusError, fetch_unpinned, fetch_url

__all__ = ["FetchOptions", "HttpStatusError", "VerifiedRelease", "fetch_unpinned", "fetch_url",
           "inrelease", "suite_for"]
