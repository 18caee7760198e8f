"""cache gc: removes only what no output or recent build needs, keeps backing files, evicts LRU
under --max-size, and is safe beside a build running in another process."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cache_support as S
from builder.cache.gc import gc, parse_size
from builder.cache.lease import Lease, used_stamp
from builder.cache.store import Store
from builder.cache.usage import scan
from builder.errors import UsageError
from builder.host.accel import Accel
from builder.publish import publish

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DAY = 86400


def _age(p: Path, days: float) -> None:
    t = time.time() - days * DAY
    os.utime(p, (t, t))


def _age_build(store: Store, recipe: str, keys, days: float) -> None:
    """As if ``recipe``'s stages were last built and used ``days`` ago."""
    for k in keys:
        _age(used_stamp(store, k), days)
    for f in (store.root / "index" / recipe).glob("*.json"):
        _age(f, days)


def _download(store: Store, days: float) -> str:
    blob = os.urandom(64 * 1024)
    sha = hashlib.sha256(blob).hexdigest()
    _age(store.ingest(io.BytesIO(blob), sha, what="t", hint="h"), days)
    return sha


def _keys(result) -> list[str]:
    return [s.key for s in result.steps]


def _present(store: Store, keys) -> list[bool]:
    return [store.read_meta(k) is not None for k in keys]


def _chain_ok(image: Path) -> list[str]:
    """qemu-img's own view of the image's backing chain (fails if a layer is missing)."""
    info = json.loads(S.qemu_img("info", "--backing-chain", "-U", "--output=json", str(image)))
    return [i["filename"] for i in info]


@pytest.fixture
def world(tmp_path):
    """pub: built and published; old: built 40 days ago; recent: built now; plus an incomplete
    stage dir, an old download only ``old`` names, one ``pub`` names and an unnamed old one."""
    cache, out = tmp_path / "cache", tmp_path / "output"
    store = Store(cache)
    w = {"store": store, "out": out}
    w["dl_pub"] = _download(store, 40)
    w["dl_old"] = _download(store, 40)
    w["dl_none"] = _download(store, 40)
    res = S.engine(cache, download=w["dl_pub"]).run(S.recipe("pub", 1), S.PIPELINE)
    publish(res, out, Accel("tcg", "test"), None)
    w["pub"] = _keys(res)
    res = S.engine(cache, download=w["dl_old"]).run(S.recipe("old", 2), S.PIPELINE)
    w["old"] = _keys(res)
    res = S.engine(cache).run(S.recipe("recent", 3), S.PIPELINE)
    w["recent"] = _keys(res)
    _age_build(store, "pub", w["pub"], 40)
    _age_build(store, "old", w["old"], 40)
    w["incomplete"] = store.stage_dir("f" * 64)
    w["incomplete"].mkdir()
    (w["incomplete"] / "half.bin").write_bytes(b"x" * 1000)
    return w


def test_dry_run_lists_without_deleting(world):
    store = world["store"]
    def tree():  # gc may create lock files; it must not touch stages or downloads
        return sorted(str(p) for d in ("stages", "downloads") for p in (store.root / d).rglob("*"))
    before = tree()
    r = gc(store, world["out"], keep_days=30, dry_run=True)
    assert sorted(s["key"] for s in r.removed_stages) == sorted(world["old"] + ["f" * 64])
    assert sorted(d["sha256"] for d in r.removed_downloads) == sorted([world["dl_old"], world["dl_none"]])
    assert r.freed > 0
    assert tree() == before
    assert all(_present(store, world["old"] + world["pub"] + world["recent"]))


def test_real_run_removes_only_unkept(world):
    store = world["store"]
    r = gc(store, world["out"], keep_days=30)
    assert sorted(s["key"] for s in r.removed_stages) == sorted(world["old"] + ["f" * 64])
    assert _present(store, world["old"]) == [False, False] and not world["incomplete"].exists()
    assert all(_present(store, world["pub"] + world["recent"]))
    assert all("output" in r.kept[k] for k in world["pub"])
    assert {"recent use", "recent build"} <= r.kept[world["recent"][0]]
    # the download pub's stage names stays; the others go
    assert store.download_path(world["dl_pub"]).exists()
    assert not store.download_path(world["dl_old"]).exists()
    assert not store.download_path(world["dl_none"]).exists()
    assert r.size_after == scan(store).total < r.size_before
    assert not any((store.root / "stages" / "tmp").iterdir())   # the renamed-out dirs are gone too
    # the published image still opens through its whole chain
    assert len(_chain_ok(world["out"] / "pub" / "pub.qcow2")) == 2
    # a second gc finds nothing more; keep-days 0 then lets the unpublished recent build go
    assert gc(store, world["out"], keep_days=30).removed_stages == []
    r = gc(store, world["out"], keep_days=0)
    assert sorted(s["key"] for s in r.removed_stages) == sorted(world["recent"])
    assert all(_present(store, world["pub"]))


def test_a_cache_hit_counts_as_use(world):
    store, cache = world["store"], world["store"].root
    res = S.engine(cache).run(S.recipe("old", 2), S.PIPELINE)
    assert [s.hit for s in res.steps] == [True, True]
    r = gc(store, world["out"], keep_days=30)
    assert all(_present(store, world["old"]))
    assert "recent use" in r.kept[world["old"][1]]


def test_backing_file_of_a_kept_overlay_is_kept(world):
    """The output names only its export layer; the disk layer it reads through must stay."""
    store, out = world["store"], world["out"]
    manifest = out / "pub" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["stages"] = [s for s in m["stages"] if s["name"] == "export"]
    manifest.write_text(json.dumps(m))
    # and an unpublished, recently used overlay over an old disk layer
    disk_old, export_old = world["old"]
    os.utime(used_stamp(store, export_old))
    r = gc(store, out, keep_days=1)
    disk_pub, export_pub = world["pub"]
    assert r.kept[export_pub] == {"output"}
    assert r.kept[disk_pub] == {"backs a kept stage", "backs an output"}
    assert r.kept[disk_old] == {"backs a kept stage"}
    assert all(_present(store, world["pub"] + world["old"]))
    assert len(_chain_ok(out / "pub" / "pub.qcow2")) == 2
    assert len(_chain_ok(store.stage_dir(export_old) / "image.qcow2")) == 2
    # without anything naming the overlays, both layers go
    manifest.unlink()
    _age(used_stamp(store, export_old), 40)
    r = gc(store, out, keep_days=1)
    assert set(world["pub"] + world["old"]) <= {s["key"] for s in r.removed_stages}


def test_max_size_evicts_least_recently_used_and_never_a_used_backing_file(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "output"
    store = Store(cache)
    builds = {n: _keys(S.engine(cache, pad_kib=128).run(S.recipe(n, i), S.PIPELINE))
              for i, n in enumerate(("r1", "r2", "r3"))}
    # r1 oldest; its disk layer was used least recently of all, but its export reads through it
    _age(used_stamp(store, builds["r1"][0]), 43)
    _age(used_stamp(store, builds["r1"][1]), 42)
    for n, days in (("r2", 41), ("r3", 40)):
        _age_build(store, n, builds[n], days)
    _age_build(store, "r1", [], 42)
    u = scan(store)
    export_r1 = next(s for s in u.stages if s.key == builds["r1"][1])
    # room for everything but r1's export layer: that one goes, its disk layer must stay
    r = gc(store, out, keep_days=30, max_size=u.total - export_r1.bytes)
    assert [s["key"] for s in r.removed_stages] == [builds["r1"][1]]
    assert _present(store, builds["r1"]) == [True, False]
    assert all(_present(store, builds["r2"] + builds["r3"]))
    assert r.size_after <= r.max_size and not r.over_size
    # less room: r1's disk layer (now unused) goes next, then r2's export, oldest first
    u = scan(store)
    size = {s.key: s.bytes for s in u.stages}
    r = gc(store, out, keep_days=30, max_size=u.total - size[builds["r1"][0]] - size[builds["r2"][1]] // 2)
    assert [s["key"] for s in r.removed_stages][:2] == [builds["r1"][0], builds["r2"][1]]
    assert all(_present(store, builds["r3"]))
    # kept stages are never evicted, whatever the size asked
    r = gc(store, out, keep_days=40.5, max_size=0)
    assert all(_present(store, builds["r3"])) and r.over_size


def test_lease_pins_stages_until_the_build_is_done(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "output"
    store = Store(cache)
    with Lease(store) as lease:
        res = S.engine(cache).run(S.recipe("x", 1), S.PIPELINE, lease=lease)
        r = gc(store, out, keep_days=0)
        # the export layer is busy; its disk layer is not even tried while the export stays
        assert r.removed_stages == [] and [b["key"] for b in r.busy] == [_keys(res)[1]]
        assert r.downloads_busy and all(_present(store, _keys(res)))
    r = gc(store, out, keep_days=0)
    assert sorted(s["key"] for s in r.removed_stages) == sorted(_keys(res))


def test_gc_beside_a_running_build_in_another_process(world, tmp_path):
    """A build in a child process is in its export stage (an overlay on its disk layer, sleeping)
    while gc runs with --keep-days 0: the child's stages survive and it finishes; old ones go."""
    store, out = world["store"], world["out"]
    counter = tmp_path / "counter"
    counter.mkdir()
    env = dict(os.environ, PYTHONPATH=f"{TESTS}:{ROOT}")
    child = subprocess.Popen([sys.executable, str(TESTS / "cache_support.py"), str(store.root), str(counter),
                              "live", "7", "4"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 60
        while not (counter / "export.started").exists():
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "the child's export stage never started"
            time.sleep(0.05)
        live_disk = [s for s in scan(store).stages if s.recipe == "live"]
        assert [s.stage for s in live_disk] == ["disk"]
        work = list((store.root / "stages" / "tmp").iterdir())
        r = gc(store, out, keep_days=0)
        assert child.poll() is None, "gc ran while the build was still running"
        # its disk layer is pinned twice: by the build's lease and as the backing file of the
        # overlay in its work dir
        assert r.kept[live_disk[0].key] == {"backs a running build"}
        assert set(world["old"] + world["recent"]) <= {s["key"] for s in r.removed_stages}
        assert store.read_meta(live_disk[0].key) is not None
        assert all(p.exists() for p in work)                      # its work dir is untouched
        assert r.downloads_busy and store.download_path(world["dl_none"]).exists()
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, stderr
    keys = stdout.split()
    assert keys[0] == live_disk[0].key and all(_present(store, keys))
    assert len(_chain_ok(store.stage_dir(keys[1]) / "image.qcow2")) == 2
    # the lease, not luck, kept them: with the build gone the next gc removes them (and the download)
    r = gc(store, out, keep_days=0)
    assert set(keys) <= {s["key"] for s in r.removed_stages}
    assert not store.download_path(world["dl_none"]).exists()


def test_gc_beside_a_killed_build_and_a_running_one(tmp_path):
    """engine_fakes' pipeline in a child, sleeping in its slow stage: a and b are protected only
    by the child's lease; killing the child (SIGKILL) drops it, and gc then removes them and
    sweeps the half-written work dir."""
    cache, counter = tmp_path / "cache", tmp_path / "counter"
    counter.mkdir()
    store = Store(cache)
    env = dict(os.environ, PYTHONPATH=f"{TESTS}:{ROOT}")
    child = subprocess.Popen([sys.executable, str(TESTS / "engine_fakes.py"), str(cache), str(counter), "0.2"],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (counter / "slow.started").exists():
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        done = sorted(s.key for s in scan(store).stages)
        assert len(done) == 2
        r = gc(store, tmp_path / "output", keep_days=0)
        assert child.poll() is None
        assert r.removed_stages == [] and sorted(b["key"] for b in r.busy) == done
        assert r.swept == [] and len(list((cache / "stages" / "tmp").iterdir())) == 1
    finally:
        child.kill()
        child.wait()
    r = gc(store, tmp_path / "output", keep_days=0)
    assert sorted(s["key"] for s in r.removed_stages) == done
    assert len(r.swept) == 1 and not any((cache / "stages" / "tmp").iterdir())


def test_parse_size():
    assert parse_size("20G") == 20 << 30 and parse_size("1.5MiB") == 3 << 19 and parse_size("512") == 512
    with pytest.raises(UsageError):
        parse_size("lots")


def _cli(cache: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder.cli", "--cache-dir", str(cache), "--output-dir", str(out),
                           "cache", "gc", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_json(world):
    store, out = world["store"], world["out"]
    p = _cli(store.root, out, "--dry-run", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["dry_run"] is True and sorted(s["key"] for s in d["removed_stages"]) == sorted(world["old"] + ["f" * 64])
    assert all(_present(store, world["old"]))
    p = _cli(store.root, out, "--max-size", "lots")
    assert p.returncode == 2 and "--max-size" in p.stderr and "Traceback" not in p.stderr
    p = _cli(store.root, out, "--keep-days", "-1")
    assert p.returncode == 2
    p = _cli(store.root, out)
    assert p.returncode == 0, p.stderr
    assert "removed disk" in p.stdout and "freed" in p.stdout
    assert _present(store, world["old"]) == [False, False] and all(_present(store, world["pub"]))
