"""converters/linux/kernel.py: a Debian guest whose only kernel cannot boot from virtio gets the
release's kernel (apt on the host, the guest's dpkg in the convert launch), and GRUB's default is
pinned to it past the newer Xen-only one. Fixture: the Xen PV guest with its Debian kernel purged
and a Xen-only kernel's files in its place (tests/container_fixtures.py ``xen_only``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from container_fixtures import XEN_ONLY_VERSION, xen_only

REPO = Path(__file__).resolve().parents[3]


def cli(*args, cache: Path, out: Path, timeout=5400):
    env = {**os.environ, "IRONFORGE_CACHE": str(cache), "IRONFORGE_OUTPUT": str(out)}
    return subprocess.run([sys.executable, "-m", "builder.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.boot
@pytest.mark.timeout(7200)
def test_xen_only_guest_gets_the_release_kernel_and_boots_it(tmp_path):
    src = xen_only("amd64")
    cache, out = tmp_path / "cache", tmp_path / "output"
    r = cli("convert", "--no-verify", "--json", "--name", "xenonly12", src, cache=cache, out=out)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads(r.stdout)
    conv = json.loads((Path(res["output"]) / "manifest.json").read_text())["conversion"]
    plan = conv["plan"]
    assert plan["kernel_install"]["package"] == "linux-image-amd64"
    new = [k for k in conv["done"]["kernel"]["initramfs_built"]]
    assert len(new) == 1 and new[0].endswith("-amd64")
    assert plan["default_kernel"]["kernel"] == new[0]
    grub = next(f for f in plan["files"] if f["path"] == "/etc/default/grub")
    # the report keeps each edit's reason, not its text: the pinned entry is in the plan
    assert f"gnulinux-{new[0]}-advanced-" in plan["default_kernel"]["entry"] and XEN_ONLY_VERSION in grub["why"]
    r = cli("verify", "--json", "--evidence-dir", tmp_path / "ev", res["image"], cache=cache, out=out, timeout=3600)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    log = (tmp_path / "ev" / "xenonly12" / "serial.log").read_text(errors="replace")
    cmdline = next(ln for ln in log.splitlines() if "Kernel command line:" in ln)
    assert f"vmlinuz-{new[0]}" in cmdline and "root=UUID=" in cmdline
    assert re.search(rf"Linux version {re.escape(new[0])}", log)
