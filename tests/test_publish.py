"""publish: atomic for readers at every instant, immutable, and never sharing a writable inode
with the cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import publish_child as P
from builder.publish import place

HERE = Path(__file__).parent


def _state(output: Path) -> str:
    """The label of the complete output at output/pub, failing on anything partial."""
    final = output / "pub"
    assert sorted(p.name for p in final.iterdir()) == ["SHA256SUMS", "manifest.json", "pub.qcow2", "sbom.spdx.json"]
    json.loads((final / "manifest.json").read_text())          # complete JSON
    data = (final / "pub.qcow2").read_bytes()
    label = data[:3].decode()
    assert data == label.encode() * 4096                        # whole, not torn
    return label


def _debris(output: Path) -> list[str]:
    return sorted(p.name for p in output.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("point,expect", [("placed", "old"), ("assembled", "old"), ("swapped", "new")])
def test_sigkill_at_each_step_leaves_a_complete_output_and_the_next_run_sweeps(tmp_path, point, expect):
    cache, output = tmp_path / "cache", tmp_path / "output"
    P.publish_label(cache, output, "old")
    marker = tmp_path / "paused"
    env = dict(os.environ, PYTHONPATH=f"{HERE}:{HERE.parent}")
    proc = subprocess.Popen([sys.executable, str(HERE / "publish_child.py"), str(cache), str(output), "new",
                             point, str(marker)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, f"publish never reached {point}"
        time.sleep(0.02)
    assert _state(output) == expect          # while it is paused: a reader sees a whole output
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _state(output) == expect          # after the kill: still whole
    if point != "swapped":
        assert _debris(output), "the killed run's work dir should be there until the next publish"
    P.publish_label(cache, output, "nxt")
    assert _state(output) == "nxt"
    assert _debris(output) == []             # the dead run's debris was swept


def test_published_files_are_read_only_and_writing_one_cannot_change_the_cache(tmp_path):
    cache, output = tmp_path / "cache", tmp_path / "output"
    eng, result = P.build(cache, "abc")
    cached = result.artifacts["export"].path("qcow2")
    from builder.publish import publish
    out = publish(result, output, eng.accel, None)
    pub = out / "pub.qcow2"
    assert all(p.stat().st_mode & 0o777 == 0o444 for p in out.iterdir())
    if os.geteuid() == 0:   # modes do not stop root: the file must be its own inode
        assert pub.stat().st_ino != cached.stat().st_ino
    with open(pub, "r+b") as f:  # as root this succeeds; a user would need a chmod first
        f.write(b"XYZ")
    assert cached.read_bytes() == b"abc" * 4096


def test_place_links_only_read_only_files_for_a_user_modes_protect(tmp_path):
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.write_bytes(b"r" * 100)
    rw.write_bytes(b"w" * 100)
    ro.chmod(0o444)
    assert place(ro, tmp_path / "a", euid=1000) == "link"
    assert (tmp_path / "a").stat().st_ino == ro.stat().st_ino
    assert place(rw, tmp_path / "b", euid=1000) in ("reflink", "copy")       # writable: never shared
    assert place(ro, tmp_path / "c", euid=0) in ("reflink", "copy")          # root ignores modes
    for n in "bc":
        p = tmp_path / n
        assert p.stat().st_nlink == 1 and p.stat().st_mode & 0o777 == 0o444
    assert (tmp_path / "b").read_bytes() == b"w" * 100
