"""The store trusts only complete stage directories, and its locks exclude across processes."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

from builder.cache.store import Store, atomic_write_text, file_lock


def _commit(store: Store, key: str, files: dict[str, bytes]) -> Path:
    wd = store.new_stage_workdir(key)
    for name, data in files.items():
        (wd / name).write_bytes(data)
    return store.commit_stage(key, wd, {"files": {n: n for n in files}})


def test_commit_then_read(tmp_path):
    store = Store(tmp_path)
    d = _commit(store, "k1", {"a.bin": b"abc"})
    meta = store.read_meta("k1")
    assert meta["complete"] is True and meta["key"] == "k1"
    assert (d / "a.bin").read_bytes() == b"abc"
    assert not any((tmp_path / "stages" / "tmp").iterdir())


def test_untrusted_states(tmp_path):
    store = Store(tmp_path)
    d = _commit(store, "k1", {"a.bin": b"abc"})
    (d / "a.bin").unlink()                       # a listed file vanished
    assert store.read_meta("k1") is None
    d = _commit(store, "k2", {"a.bin": b"abc"})
    meta = json.loads((d / "meta.json").read_text())
    (d / "meta.json").write_text(json.dumps(dict(meta, key="other")))  # copied from elsewhere
    assert store.read_meta("k2") is None
    (d / "meta.json").write_text(json.dumps(dict(meta, complete=False)))
    assert store.read_meta("k2") is None
    (d / "meta.json").unlink()
    assert store.read_meta("k2") is None
    # a fresh commit over an untrusted leftover replaces it
    _commit(store, "k2", {"b.bin": b"x"})
    assert store.read_meta("k2")["files"] == {"b.bin": "b.bin"}
    assert not (store.stage_dir("k2") / "a.bin").exists()


def test_atomic_write_replaces_whole(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in p.parent.iterdir()] == ["f.txt"]


def _hold(path, started, seconds):
    with file_lock(Path(path)):
        started.set()
        time.sleep(seconds)


def test_lock_excludes_other_processes(tmp_path):
    lock = tmp_path / "l.lock"
    started = multiprocessing.Event()
    p = multiprocessing.Process(target=_hold, args=(str(lock), started, 1.0))
    p.start()
    assert started.wait(30)
    t0 = time.monotonic()
    with file_lock(lock):
        waited = time.monotonic() - t0
    p.join()
    assert waited > 0.5  # we could only get it after the holder let go


def test_dead_workdirs_removed_live_kept(tmp_path):
    store = Store(tmp_path)
    live = store.new_stage_workdir("abc")
    dead = tmp_path / "stages" / "tmp" / "abc.999999999.xyz"
    dead.mkdir()
    assert store.remove_dead_workdirs() == 1
    assert live.exists() and not dead.exists()


def test_ingest_checks_the_digest_and_leaves_nothing_on_mismatch(tmp_path):
    import hashlib
    import io

    import pytest

    from builder.errors import ChecksumError
    store = Store(tmp_path)
    good = hashlib.sha256(b"payload").hexdigest()
    p = store.ingest(io.BytesIO(b"payload"), good, what="t", hint="h")
    assert p == store.download_path(good) and p.read_bytes() == b"payload"
    assert p.stat().st_mode & 0o222 == 0  # read-only: hard-linked into artifacts
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ChecksumError) as ei:
        store.ingest(io.BytesIO(b"payload"), wrong, what="t", hint="h")
    assert ei.value.expected == wrong and ei.value.actual == good
    assert not store.download_path(wrong).exists()
    assert not any(store.download_tmpdir().iterdir())
