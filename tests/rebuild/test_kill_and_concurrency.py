"""rebuild killed (SIGKILL) in a stage or at each publish step, and rebuilds run side by side:
latest always names a complete version, a later rebuild resumes, nothing is corrupted. Real
processes (tests/rebuild_child.py), real locks, real engine and cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.rebuild import versions
from builder.rebuild.command import rebuild_one
import rebuild_support as R

HERE = Path(__file__).resolve().parent.parent


def _child(env, **opts) -> subprocess.Popen:
    pyenv = dict(os.environ, PYTHONPATH=f"{HERE}:{HERE.parent}")
    return subprocess.Popen([sys.executable, str(HERE / "rebuild_child.py"), str(env.cache), str(env.counter),
                             str(env.keyring), str(env.output), env.suite.mirror, json.dumps(opts)],
                            env=pyenv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited before {what}: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"child never reached {what}"
        time.sleep(0.02)


def _whole(folder: Path) -> str:
    """The version latest names; every version folder is complete; no debris of live runs."""
    live = versions.latest_version(folder)
    assert live is not None
    for v in versions.versions(folder):
        m = json.loads((folder / v / "manifest.json").read_text())
        assert m["recipe"]["name"] == "fleet"
        assert (folder / v / "fleet.qcow2").is_file() and (folder / v / "changes.json").is_file()
    assert json.loads((folder / "manifest.json").read_text())["stages"] == \
        json.loads((folder / live / "manifest.json").read_text())["stages"]
    return live


def _rebuild(env, **kw):
    return rebuild_one(env.engine(), env.recipe(), R.STAGES, env.output, **kw)


def test_killed_in_a_stage_leaves_latest_and_the_next_rebuild_resumes(env, tmp_path):
    first = _rebuild(env)
    env.suite.bump(openssl="3.0.15-1")
    marker = tmp_path / "held"
    proc = _child(env, hold_drivers=str(marker))
    _wait_for(marker, proc, "the drivers stage")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folder = env.output / "fleet"
    assert _whole(folder) == first.version and versions.versions(folder) == [first.version]
    n = len(env.runs())
    o = _rebuild(env)
    assert env.runs()[n:] == ["drivers", "export"]          # bootstrap finished before the kill: a hit
    assert o.status == "published" and _whole(folder) == o.version
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("point", ["assembled", "renamed", "flipped"])
def test_killed_at_each_publish_step_leaves_a_whole_latest(env, tmp_path, point):
    first = _rebuild(env)
    env.suite.bump(openssl="3.0.16-1")
    marker = tmp_path / "paused"
    proc = _child(env, pause_at=point, pause_marker=str(marker))
    _wait_for(marker, proc, point)
    folder = env.output / "fleet"
    expect_new = point == "flipped"
    live = _whole(folder)
    assert (live != first.version) == expect_new
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _whole(folder) == live
    o = _rebuild(env)
    if expect_new:
        assert o.status == "up-to-date" and o.version == live
    else:
        assert o.status == "published" and _whole(folder) == o.version
        # a version renamed into place but never flipped to is removed, not kept as history
        assert versions.versions(folder) == [first.version, o.version]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_two_rebuilds_at_once_one_waits_and_no_wait_exits_3(env, tmp_path):
    first = _rebuild(env)
    env.suite.bump(libc6="2.36-9+deb12u9")
    marker = tmp_path / "held"
    a = _child(env, hold_export=str(marker))
    _wait_for(marker, a, "the export stage")
    b = _child(env, no_wait=True)
    out, err = b.communicate(timeout=120)
    assert b.returncode == 3, err
    said = json.loads(out)
    assert said["error"] == "OutputBusy" and f"pid {a.pid}" in said["message"] and "--no-wait" in said["message"]
    c = _child(env)
    time.sleep(2)
    assert c.poll() is None                      # waiting for a's lock
    n = len(env.runs())
    Path(str(marker) + ".go").write_text("")     # let a finish
    out_a, err_a = a.communicate(timeout=120)
    out_c, err_c = c.communicate(timeout=120)
    assert a.returncode == 0, err_a
    assert c.returncode == 0, err_c
    ra, rc = json.loads(out_a), json.loads(out_c)
    assert ra["status"] == "published" and rc["status"] == "up-to-date" and rc["version"] == ra["version"]
    assert env.runs()[n:] == []                   # c found a's version current and ran nothing
    folder = env.output / "fleet"
    assert _whole(folder) == ra["version"]
    assert versions.versions(folder) == [first.version, ra["version"]]
