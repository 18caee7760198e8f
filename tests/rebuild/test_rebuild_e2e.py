"""ironforge rebuild end to end, through the real CLI: real mmdebstrap, libguestfs and qemu-img
against a loopback mirror (tests/rebuild_mirror.py) whose InRelease is signed with a throw-away
key. A cold rebuild publishes version 1; a second one with the mirror untouched is "up to date"
and runs no stage; a bumped InRelease (later Date, our package upgraded, one dependency swapped
for another) rebuilds bootstrap and every stage after it, publishes version 2 and writes the
guest's package diff. Two cold builds: 42 min measured here under TCG on a loaded host, so slow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fetch_support import kill_agent, make_signer
from rebuild_mirror import STATE_A, STATE_B, Mirror, debian_index, write_recipe
from shared_cache import cache_root

from builder.cache.store import Store

ROOT = Path(__file__).resolve().parents[2]
# two cold bootstraps + disk + export: 42 min measured on a loaded 2-core TCG host
pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(7200)]


def ironforge(*args, cache, out, recipes, timeout=3600):
    cmd = [sys.executable, "-m", "builder.cli", "--cache-dir", str(cache), "--output-dir", str(out),
           "--recipes-dir", str(recipes), *args]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    return r, time.monotonic() - t0


def test_rebuild_cold_then_noop_then_bumped_inrelease(tmp_path):
    signer = make_signer(tmp_path / "key", "ironforge e2e mirror <mirror@test>")
    # Debian's index is fetched through the shared test cache (one download per archive state)
    mirror = Mirror(signer, tmp_path / "debs", debian_index(Store(cache_root() / "engine")))
    (tmp_path / "debs").mkdir()
    try:
        mirror.serve(STATE_A)
        recipes, cache, out = tmp_path / "recipes", tmp_path / "cache", tmp_path / "output"
        write_recipe(recipes, ROOT, mirror)
        r, cold = ironforge("rebuild", "rebuild-e2e", "--no-verify", "--json", cache=cache, out=out, recipes=recipes)
        assert r.returncode == 0, r.stderr[-6000:]
        (v1,) = json.loads(r.stdout)
        assert v1["status"] == "published" and [s["hit"] for s in v1["stages"]] == [False] * 5
        folder = out / "rebuild-e2e"
        pk1 = (folder / "latest" / "packages.txt").read_text()
        assert "ironforge-canary\t1.0\tall" in pk1 and "ironforge-canary-old\t1.0\tall" in pk1

        r, noop = ironforge("rebuild", "rebuild-e2e", "--no-verify", "--json", cache=cache, out=out, recipes=recipes)
        assert r.returncode == 0, r.stderr[-4000:]
        (same,) = json.loads(r.stdout)
        assert same["status"] == "up-to-date" and same["stages"] == [] and same["version"] == v1["version"]
        assert same["pins"]["bootstrap"]["release_date"] == "Sat, 11 Jul 2026 10:16:37 UTC"
        assert sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.is_symlink()) == [v1["version"]]

        mirror.bump(STATE_B)
        r, bumped = ironforge("rebuild", "rebuild-e2e", "--no-verify", "--json", cache=cache, out=out, recipes=recipes)
        assert r.returncode == 0, r.stderr[-6000:]
        (v2,) = json.loads(r.stdout)
        assert v2["status"] == "published" and v2["previous"] == v1["version"]
        assert [(s["name"], s["hit"]) for s in v2["stages"]] == [
            ("bootstrap", False), ("disk", False), ("drivers", False), ("export", False)]
        assert v2["stages"][0]["reason"] == "upstream inrelease_sha256 changed"
        assert os.readlink(folder / "latest") == v2["version"]
        doc = json.loads((folder / v2["version"] / "changes.json").read_text())
        up = {u["pin"]: u for u in doc["changed"]["upstream"] if u["stage"] == "bootstrap"}
        assert up["release_date"]["new"] == "Sun, 12 Jul 2026 10:16:37 UTC"
        pk = doc["packages"]
        assert {"name": "ironforge-canary", "old": "1.0", "new": "2.0"} in pk["upgraded"]
        assert {"name": "ironforge-canary-dep", "version": "1.0"} in pk["added"]
        assert {"name": "ironforge-canary-old", "version": "1.0"} in pk["removed"]
        md = (folder / v2["version"] / "CHANGES.md").read_text()
        assert "| ironforge-canary | 1.0 | 2.0 |" in md
        # the published image is the new one, and the old version is still whole
        assert (folder / v1["version"] / "rebuild-e2e.qcow2").is_file()
        assert "ironforge-canary\t2.0\tall" in (folder / "packages.txt").read_text()
        keep = os.environ.get("IRONFORGE_REBUILD_SAMPLE")
        if keep:
            shutil.copy(folder / v2["version"] / "CHANGES.md", keep)
        print(f"\ncold {cold:.1f} s, no-op {noop:.1f} s ({noop / cold:.2%}), bumped {bumped:.1f} s")
    finally:
        mirror.close()
        kill_agent(signer)
