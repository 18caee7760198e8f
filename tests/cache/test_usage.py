"""cache du: sizes per stage and recipe from real engine-made stages; blocks, hard links once."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cache_support as S
from builder.cache.store import Store
from builder.cache.usage import scan
from builder.host.proc import run

ROOT = Path(__file__).resolve().parents[2]


def _du_bytes(path: Path) -> int:
    """GNU du's view (allocated blocks, hard links once) to check ours against."""
    return int(run(["du", "-s", "--block-size=1", str(path)], what="du", timeout=60).stdout.split()[0])


def test_sizes_per_stage_and_recipe(tmp_path):
    cache = tmp_path / "cache"
    S.engine(cache, pad_kib=256).run(S.recipe("alpha", 1), S.PIPELINE)
    S.engine(cache, pad_kib=512).run(S.recipe("beta", 2), S.PIPELINE)
    store = Store(cache)
    # a download, hard-linked into a stage as the fetch stage does: counted once, as a download
    blob = os.urandom(300 * 1024)
    dl = store.ingest(io.BytesIO(blob), hashlib.sha256(blob).hexdigest(), what="t", hint="h")
    disk_alpha = next(s for s in scan(store).stages if s.recipe == "alpha" and s.stage == "disk")
    os.chmod(disk_alpha.dir, 0o755)
    os.link(dl, disk_alpha.dir / "linked.bin")

    u = scan(store)
    d = u.to_dict()
    assert d["by_stage"]["disk"]["count"] == 2 and d["by_stage"]["export"]["count"] == 2
    assert set(d["by_recipe"]) == {"alpha", "beta"}
    # beta's disk padded twice as much as alpha's: at least 256 KiB more, in real blocks
    assert d["by_recipe"]["beta"]["bytes"] - d["by_recipe"]["alpha"]["bytes"] >= 200 * 1024
    assert d["downloads"]["count"] == 1 and d["downloads"]["bytes"] == u.downloads_bytes
    assert d["downloads"]["bytes"] >= 300 * 1024
    # the linked copy is not charged to the stage again
    disk_alpha2 = next(s for s in u.stages if s.recipe == "alpha" and s.stage == "disk")
    assert disk_alpha2.bytes < disk_alpha.bytes + 16 * 1024
    parts = d["stages"]["bytes"] + d["downloads"]["bytes"] + d["work_bytes"] + sum(d["other"].values())
    assert parts == d["total_bytes"] == _du_bytes(cache)


def test_sparse_file_counts_blocks_not_length(tmp_path):
    store = Store(tmp_path / "cache")
    wd = store.new_stage_workdir("k" * 64)
    with open(wd / "sparse.raw", "wb") as f:
        f.truncate(1 << 30)           # 1 GiB long, nothing written
    store.commit_stage("k" * 64, wd, {"stage": "disk", "recipe": "r", "files": {"image": "sparse.raw"}})
    u = scan(store)
    assert u.to_dict()["by_stage"]["disk"]["bytes"] < 1 << 20


def test_cli_du_json_and_text(tmp_path):
    cache = tmp_path / "cache"
    S.engine(cache).run(S.recipe("alpha", 1), S.PIPELINE)
    cmd = [sys.executable, "-m", "builder.cli", "--cache-dir", str(cache), "cache", "du"]
    p = subprocess.run(cmd + ["--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["by_recipe"]["alpha"]["count"] == 2 and d["total_bytes"] > 0
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "alpha" in p.stdout and "total" in p.stdout
    # an empty or absent cache is not an error
    p = subprocess.run([sys.executable, "-m", "builder.cli", "--cache-dir", str(tmp_path / "none"),
                        "cache", "du", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and json.loads(p.stdout)["total_bytes"] == 0
