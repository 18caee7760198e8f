"""Fixtures for the rebuild tests: a loopback server, a throw-away signing key, and a signed
suite per test (helpers in rebuild_support.py)."""

from __future__ import annotations

import pytest

from fetch_support import LoopbackServer, kill_agent, make_signer
import rebuild_support as R


@pytest.fixture(scope="session")
def server():
    s = LoopbackServer()
    yield s
    s.close()


@pytest.fixture(scope="session")
def signer(tmp_path_factory):
    s = make_signer(tmp_path_factory.mktemp("key-rebuild"), "ironforge rebuild test <rebuild@test>")
    yield s
    kill_agent(s)


@pytest.fixture
def suite(server, signer):
    return R.make_suite(server, signer, base_files="12.4", libc6="2.36-9", openssl="3.0.11-1",
                        old_tool="1.0")


class Env:
    def __init__(self, tmp, suite, signer):
        self.cache, self.counter, self.output = tmp / "cache", tmp / "counter", tmp / "output"
        self.suite, self.keyring = suite, signer.keyring

    def engine(self, **opts):
        return R.engine(self.cache, self.counter, self.keyring, **opts)

    def recipe(self, **kw):
        return R.recipe(self.suite.mirror, **kw)

    def runs(self):
        return R.runs(self.counter)


@pytest.fixture
def env(tmp_path, suite, signer):
    return Env(tmp_path, suite, signer)
