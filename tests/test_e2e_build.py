"""End to end through the real CLI: build Debian 12 amd64 and i386 by bootstrap, verify both boot
(side by side, under whatever accelerator this host really supports), rebuild from the cache, and
re-run only what an edited recipe value touches.

Real mmdebstrap against deb.debian.org, real libguestfs, real QEMU. The engine cache is shared
with the other image tests ($IRONFORGE_TEST_CACHE/engine), so a warm machine reuses earlier stages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from shared_cache import engine_cache

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.network, pytest.mark.boot]


def ironforge(*args, cache: Path, out: Path, recipes: Path | None = None, timeout=3000):
    cmd = [sys.executable, "-m", "builder.cli", "--output-dir", str(out)]
    if recipes:
        cmd += ["--recipes-dir", str(recipes)]
    env = dict(os.environ, IRONFORGE_CACHE=str(cache))
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = engine_cache()
    out = tmp_path_factory.mktemp("output")
    r = ironforge("build", "debian-12-amd64", "debian-12-i386", "--jobs", "2", "--json", cache=cache, out=out)
    assert r.returncode == 0, f"build failed (exit {r.returncode}):\n{r.stderr[-6000:]}"
    return cache, out, {b["recipe"]: b for b in json.loads(r.stdout)}


@pytest.mark.parametrize("name,arch,bits", [("debian-12-amd64", "x86_64", 64), ("debian-12-i386", "i686", 32)])
def test_built_and_verified(built, name, arch, bits):
    _cache, out, results = built
    res = results[name]
    assert res["ok"]
    d = out / name
    assert (d / f"{name}.qcow2").is_file()
    m = json.loads((d / "manifest.json").read_text())
    v = m["verification"]
    assert v["status"] == "passed", v
    assert v["arch"] == arch
    assert {c["name"]: c["ok"] for c in v["checks"]} == {
        "arch": True, "virtio-root": True, "virtio-drivers": True, "systemd": True}
    assert v["marker"]["root"].startswith("/dev/vd")
    assert m["recipe"]["arch"] == arch
    # [customize] only edits files: the disk stage applied it to the tree, no customize stage
    assert [s["name"] for s in m["stages"]] == ["bootstrap", "disk", "drivers", "export", "verify"]
    assert m["image"]["qcow2"]["sha256"]
    # the drivers stage proved the modules from the listing the disk stage read from the tree
    assert m["guest"]["listing_read_by"] == "disk"
    # the booted guest runs under the recipe's host name (the probe reads the kernel's)
    assert v["marker"]["host"] == ("debian12" if bits == 64 else "debian12-i386")
    # this build's own image: the probe went in from the host, without an appliance
    assert v["inject_via"] == "host" and v["inject_seconds"] < 30
    pkgs = (d / "packages.txt").read_text()
    kernel = "linux-image-amd64" if bits == 64 else "linux-image-686-pae"
    assert any(line.startswith(kernel + "\t") for line in pkgs.splitlines())
    assert (d / "verify-serial.log").is_file() or any(p.name.endswith("serial.log") for p in d.iterdir())
    # the boot's phases, read from the serial console: a Debian kernel names its hand-over to /init
    assert all(v["timeline"][p] > 0 for p in ("firmware", "kernel", "userspace", "marker")), v["timeline"]
    # every build writes the HTML report of its run, each recipe's verdict in it
    page = (out / "report.html").read_text()
    assert f'data-image="{name}" data-verdict="passed"' in page


def test_fleet_verify_side_by_side(built, tmp_path):
    cache, out, _ = built
    junit = tmp_path / "junit.xml"
    before = {n: _sha256(out / n / f"{n}.qcow2") for n in ("debian-12-amd64", "debian-12-i386")}
    html = tmp_path / "report.html"
    r = ironforge("verify", "debian-12-amd64", "debian-12-i386", "--parallel", "2", "--junit", str(junit),
                  "--html", str(html), "--json", cache=cache, out=out)
    assert r.returncode == 0, r.stderr[-4000:]
    report = json.loads(r.stdout)
    assert (report["passed"], report["total"]) == (2, 2)
    results = report["results"]
    assert [x["status"] for x in results] == ["passed", "passed"]
    assert sorted(x["arch"] for x in results) == ["i686", "x86_64"]
    cases = ET.parse(junit).getroot().iter("testcase")
    cases = list(cases)
    assert len(cases) == 2 and not any(c.find("failure") is not None for c in cases)
    for c in cases:   # provenance from the published manifest, and the command that booted it
        props = {p.get("name"): p.get("value") for p in c.find("properties")}
        m = json.loads((out / c.get("name") / "manifest.json").read_text())
        assert props["image_sha256"] == m["image"]["qcow2"]["sha256"]
        assert props["cache_key.export"] == next(s["key"] for s in m["stages"] if s["name"] == "export")
        assert props["accel"] in ("kvm", "tcg") and "qemu-system-" in props["qemu_command"]
        assert "IRONFORGE-READY" in c.find("system-out").text
    page = html.read_text()
    assert page.count('data-verdict="passed"') == 2 and "Boot timeline" in page
    after = {n: _sha256(out / n / f"{n}.qcow2") for n in before}
    assert before == after  # verification never writes to the published image


def test_rebuild_unchanged_is_all_hits(built):
    cache, out, _ = built
    r = ironforge("build", "debian-12-amd64", "--json", cache=cache, out=out)
    assert r.returncode == 0, r.stderr[-4000:]
    (res,) = json.loads(r.stdout)
    assert res["cached_stages"] == res["stages"] == 5


def test_hostname_edit_reruns_disk_and_after(built, tmp_path):
    cache, out, _ = built
    recipes = tmp_path / "recipes"
    shutil.copytree(ROOT / "recipes", recipes)
    f = recipes / "debian-12-amd64.toml"
    # a hostname no earlier run built: the shared cache outlives test runs
    host = f"edited-{os.getpid()}-{int(time.time())}"
    f.write_text(f.read_text().replace('hostname = "debian12"', f'hostname = "{host}"'))
    r = ironforge("plan", "debian-12-amd64", "--json", cache=cache, out=out, recipes=recipes)
    assert r.returncode == 0, r.stderr
    (plan,) = json.loads(r.stdout)
    try:
        _hostname_edit(plan, cache, tmp_path, recipes)
    finally:
        # this variant's own artifacts (disk and after) are of no use to a later run
        for step in plan["stages"][1:]:
            for key in [step["key"], *(p["key"] for p in step.get("parts", []))]:   # export's formats too
                shutil.rmtree(cache / "stages" / key, ignore_errors=True)


def _hostname_edit(plan: dict, cache: Path, tmp_path: Path, recipes: Path) -> None:
    got = [(s["stage"], s["hit"]) for s in plan["stages"]]
    assert got == [("bootstrap", True), ("disk", False), ("drivers", False), ("export", False),
                   ("verify", False)]
    assert plan["stages"][1]["reason"] == "customize.hostname changed"
    r = ironforge("build", "debian-12-amd64", "--no-verify", "--json", cache=cache, out=tmp_path / "out2",
                  recipes=recipes)
    assert r.returncode == 0, r.stderr[-4000:]
    (res,) = json.loads(r.stdout)
    assert res["cached_stages"] == 1 and res["stages"] == 4
    m = json.loads((tmp_path / "out2" / "debian-12-amd64" / "manifest.json").read_text())
    assert [s["cached"] for s in m["stages"]] == [True, False, False, False]
    assert m["verification"] == {"status": "skipped"}


def _sha256(p: Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(1 << 22):
            h.update(b)
    return h.hexdigest()
