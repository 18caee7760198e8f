"""One list of checks: the settings table, --check and run_checks all take the names from
builder.runner.checks, where each name has its implementation."""

import pytest

from builder import settings
from builder.errors import UsageError
from builder.runner import checks
from builder.runner.marker import Marker

GOOD = Marker("n", {"arch": "x86_64", "root": "/dev/vda1", "rootdisks": "vda",
                    "virtio": "virtio_blk,virtio_net", "state": "running"})


def test_the_settings_table_offers_exactly_the_implemented_checks():
    s = settings.BY_KEY["verify.checks"]
    assert s.default == list(checks.CHECKS)
    assert s.type.parse(list(checks.CHECKS)) == list(checks.CHECKS)
    with pytest.raises(Exception):
        s.type.parse(["no-such-check"])


def test_every_named_check_runs_and_an_unknown_one_is_refused():
    results = checks.run_checks(GOOD, list(checks.CHECKS), "x86_64")
    assert [r.name for r in results] == list(checks.CHECKS) and all(r.ok for r in results)
    assert checks.resolve_checks(None, ["-systemd"]) == [c for c in checks.CHECKS if c != "systemd"]
    with pytest.raises(UsageError, match="unknown check 'nope'"):
        checks.resolve_checks(None, ["nope"])


def test_missing_virtio_driver_fails_its_check():
    bad = Marker("n", {**GOOD.fields, "virtio": "virtio_blk"})
    (r,) = checks.run_checks(bad, ["virtio-drivers"], "x86_64")
    assert not r.ok and "virtio_net" in r.detail
