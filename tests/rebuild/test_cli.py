"""ironforge rebuild through the real CLI, where no guest needs building."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.rebuild.locks import lock_path

ROOT = Path(__file__).resolve().parents[2]


def ironforge(*args, cache, out):
    return subprocess.run([sys.executable, "-m", "builder.cli", "--cache-dir", str(cache), "--output-dir", str(out),
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_no_wait_while_another_rebuild_holds_the_folder_is_exit_3(tmp_path):
    out = tmp_path / "out"
    lock = lock_path(out, "debian-12-amd64", "rebuild")
    lock.parent.mkdir(parents=True)
    lock.write_text("pid 4242 since 2026-11-29T06:00:00+00:00\n")
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = ironforge("rebuild", "debian-12-amd64", "--no-wait", cache=tmp_path / "cache", out=out)
    finally:
        os.close(fd)
    assert r.returncode == 3, r.stderr
    assert "a rebuild is already running (pid 4242 since 2026-11-29T06:00:00+00:00); not waiting (--no-wait)" in r.stderr
    assert "Traceback" not in r.stderr and not (out / "debian-12-amd64").exists()


def test_rebuild_needs_a_recipe_or_all(tmp_path):
    r = ironforge("rebuild", cache=tmp_path / "cache", out=tmp_path / "out")
    assert r.returncode == 2 and "name at least one recipe, or use --all" in r.stderr


@pytest.mark.network
def test_dry_run_of_the_real_pipeline_says_what_would_run_and_publishes_nothing(tmp_path):
    # the real stages' keys: a fresh, gpgv-checked InRelease from deb.debian.org, tools, code
    r = ironforge("rebuild", "debian-12-amd64", "--dry-run", "--json", cache=tmp_path / "cache", out=tmp_path / "out")
    assert r.returncode == 0, r.stderr
    (o,) = json.loads(r.stdout)
    assert o["status"] == "would-rebuild" and o["previous"] is None
    assert [s["name"] for s in o["stages"]] == ["bootstrap", "disk", "drivers", "export", "verify"]
    assert all(not s["hit"] and s["reason"] == "never built" for s in o["stages"])
    assert len(o["pins"]["bootstrap"]["inrelease_sha256"]) == 64 and o["pins"]["bootstrap"]["suite"] == "bookworm"
    assert o["changed"]["first_version"] is True
    assert not (tmp_path / "out" / "debian-12-amd64").exists()
