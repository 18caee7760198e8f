"""Fixtures for the Windows tests: the stand-in virtio-win tree, built once per session."""

from __future__ import annotations

import pytest

from shared_cache import cache_root
from windows import standin_virtio_win


@pytest.fixture(scope="session")
def standin_vw():
    """(directory, iso) of the STAND-IN virtio-win tree (placeholder bytes, real names)."""
    cache = cache_root() / "windows"
    cache.mkdir(parents=True, exist_ok=True)
    return standin_virtio_win.standin(cache)
