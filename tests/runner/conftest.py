"""Session-wide guests for runner tests: built once, reused (the machine is shared with other builds)."""

from __future__ import annotations

import pytest

from builder.host.accel import Accel, choose
from builder.runner import tinyguest


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> tinyguest.TinyGuest:
    """A tiny x86_64 guest from the host kernel + busybox that runs the real probe script as init."""
    return tinyguest.build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def accel() -> Accel:
    return choose()


@pytest.fixture(scope="session")
def tiny_systemd(tmp_path_factory) -> tinyguest.TinyGuest:
    """The tiny guest with a stub /lib/systemd/systemd, so probe injection accepts it."""
    return tinyguest.build(tmp_path_factory.mktemp("tiny-sd"), pretend_systemd=True)
