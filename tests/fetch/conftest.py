"""Fixtures for the fetch tests (helpers in fetch_support.py)."""

from __future__ import annotations

import pytest

from builder.cache.store import Store
from builder.fetch.http import FetchOptions

from fetch_support import FakeArchive, LoopbackServer, kill_agent, make_signer, build_archive


@pytest.fixture(scope="session")
def server():
    s = LoopbackServer()
    yield s
    s.close()


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "cache")


@pytest.fixture
def fast() -> FetchOptions:
    """Timeouts and backoff small enough that every fault resolves in about a second."""
    return FetchOptions(connect_timeout=2.0, read_timeout=0.5, retries=2, backoff=0.01,
                        backoff_max=0.05, chunk_size=64 * 1024)


@pytest.fixture(scope="session")
def signer(tmp_path_factory):
    s = make_signer(tmp_path_factory.mktemp("key-archive"), "ironforge test archive <archive@test>")
    yield s
    kill_agent(s)


@pytest.fixture(scope="session")
def other_signer(tmp_path_factory):
    s = make_signer(tmp_path_factory.mktemp("key-other"), "someone else <other@test>")
    yield s
    kill_agent(s)


@pytest.fixture
def serve_archive(server, signer, tmp_path):
    """Build a fake archive and serve it; ``images=False`` makes the images answer 404."""
    def make(images: bool = True, **kw) -> tuple[str, FakeArchive]:
        root = tmp_path / f"archive{len(list(tmp_path.glob('archive*')))}"
        arc = build_archive(root, kw.pop("signer", signer), **kw)
        prefix = server.unique("debian").rsplit("/", 1)[0]

        def skip(rel: str) -> bool:
            return not images and "/current/images/" in rel and not rel.endswith("SHA256SUMS")
        return server.add_tree(prefix, root, skip), arc
    return make

