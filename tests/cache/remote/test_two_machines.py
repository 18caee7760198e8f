"""The two-machine proof with the real product: machine one builds debian-12-amd64 through the
CLI into the engine cache the image tests share (a warm machine reuses that build) and pushes
it to a real registry; machine two, with an empty cache, builds the same recipe with 0 stages
run, publishes the same sha256, and its image boots and passes verify (slow: a new boot)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from registry_support import registry
from shared_cache import engine_cache

ROOT = Path(__file__).resolve().parents[3]
RECIPE = "debian-12-amd64"


def ironforge(*args, cache: Path, out: Path, env: dict | None = None, timeout=3600):
    cmd = [sys.executable, "-m", "builder.cli", "--output-dir", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env=dict(os.environ, IRONFORGE_CACHE=str(cache), **(env or {})))


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two-machines")
    with registry(tmp / "registry") as server:
        # the remote comes from the environment here, from the option on machine two
        one = ironforge("build", RECIPE, "--json", cache=engine_cache(), out=tmp / "out1",
                        env={"IRONFORGE_CACHE_REMOTE": server.url()})
        assert one.returncode == 0, one.stderr[-6000:]
        two = ironforge("--cache-remote", server.url(), "build", RECIPE, "--json", cache=tmp / "cache2",
                        out=tmp / "out2")
        assert two.returncode == 0, two.stderr[-6000:]
        yield tmp, json.loads(one.stdout)[0], json.loads(two.stdout)[0], two.stderr, server.tags()
    # two published images, a second cache and the registry's blobs: gigabytes a cold run
    # would otherwise keep on its disk until the session ends
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.network
@pytest.mark.boot
def test_second_machine_runs_no_stage_and_publishes_the_same_image(two_machines):
    tmp, one, two, stderr, tags = two_machines
    assert two["stages"] == 5 and two["cached_stages"] == two["stages"], stderr[-3000:]
    assert "running" not in stderr and stderr.count("pulled from") == 5
    assert not [line for line in stderr.splitlines() if line.startswith("warning:")]
    m1 = json.loads((tmp / "out1" / RECIPE / "manifest.json").read_text())
    m2 = json.loads((tmp / "out2" / RECIPE / "manifest.json").read_text())
    assert [s["key"] for s in m2["stages"]] == [s["key"] for s in m1["stages"]]
    assert sorted(s["key"] for s in m1["stages"]) == tags
    assert m2["image"]["qcow2"]["sha256"] == m1["image"]["qcow2"]["sha256"]
    assert _sha256(Path(two["image"])) == _sha256(Path(one["image"])) == m1["image"]["qcow2"]["sha256"]
    assert m2["verification"]["status"] == "passed"     # the verify stage's report, pulled
    # the drivers layer reads through machine two's own disk stage
    layer = next((tmp / "cache2" / "stages" / m2["stages"][2]["key"]).glob("*.qcow2"))
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(layer)], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["backing-filename"].startswith(str(tmp / "cache2" / "stages" / m2["stages"][1]["key"]))


@pytest.mark.slow
@pytest.mark.boot
@pytest.mark.network
def test_the_pulled_image_boots_and_passes_verify(two_machines):
    tmp = two_machines[0]
    r = ironforge("verify", RECIPE, "--json", cache=tmp / "cache2", out=tmp / "out2", timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads(r.stdout)["passed"] == 1


def test_a_bad_remote_from_the_environment_is_a_usage_error(tmp_path):
    r = ironforge("plan", RECIPE, cache=tmp_path / "c", out=tmp_path / "o",
                  env={"IRONFORGE_CACHE_REMOTE": "http://registry.example/x"})
    assert r.returncode == 2 and "not an OCI registry address" in r.stderr
