"""Shared test locations: one persistent cache for everything that builds images."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("IRONFORGE_TEST_CACHE") or Path.home() / ".cache" / "ironforge-test")


def engine_cache() -> Path:
    """The engine store shared by every test that builds images, so stages built by one test
    module (bootstrap, disk) are cache hits for the next."""
    return cache_root() / "engine"
