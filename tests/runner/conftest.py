"""Session-wide guests for runner tests: built once, reused (the machine is shared with other builds)."""

from __future__ import annotations

import pytest

from builder.host.accel import Accel, choose
from builder.runner import tinyguest
from tiny_support import tiny_target


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


@pytest.fixture(scope="session")
def tiny_fleet(tiny, accel, tmp_path_factory):
    """One real fleet run shared by the report tests: a guest that passes, one whose kernel panics
    (screenshot, serial tail) and an image that does not exist (an error row).

    The passing guest's disk sits in a published-looking folder with the manifest.json our publish
    step writes, so its digest and cache keys come the way `ironforge verify` finds them."""
    import hashlib
    import json
    import shutil

    from builder.runner.provenance import beside
    from builder.runner.verify import VerifyTarget, verify_fleet

    tmp = tmp_path_factory.mktemp("fleet")
    pub = tmp / "output" / "good"
    pub.mkdir(parents=True)
    disk = pub / "good.qcow2"
    shutil.copyfile(tiny.disk, disk)
    sha = hashlib.sha256(disk.read_bytes()).hexdigest()
    keys = {"bootstrap": "b" * 64, "export": "e" * 64}
    (pub / "manifest.json").write_text(json.dumps({
        "image": {"qcow2": {"file": disk.name, "sha256": sha}},
        "stages": [{"name": n, "key": k, "cached": True, "seconds": 0.1} for n, k in keys.items()]}))
    good = tiny_target(tiny, image=disk, name="good", **beside(disk))
    targets = [good, tiny_target(tiny, name="panics", append=tiny.broken_append()),
               VerifyTarget(image=tmp / "missing.qcow2", name="missing", arch="x86_64")]
    results = verify_fleet(targets, parallel=2, timeout=240, accel=accel, out_dir=tmp / "fleet")
    return {"results": results, "dir": tmp, "sha256": sha, "keys": keys}
