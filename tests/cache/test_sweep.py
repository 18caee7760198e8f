"""The sweep removes what killed runs left, and nothing a live process or a resumable fetch owns."""

from __future__ import annotations

import os
import time
from pathlib import Path

from builder.cache.store import Store
from builder.cache.sweep import KEEP_FAILURES, PART_DAYS, PIDLESS_DAYS, sweep
from builder.host.proc import spawn

DAY = 86400


def _dead_pid() -> int:
    """The pid of a process that really ran and has exited."""
    p = spawn(["true"])
    p.wait()
    return p.pid


def _age(p: Path, days: float) -> Path:
    t = time.time() - days * DAY
    os.utime(p, (t, t))
    return p


def _mk(p: Path, data: bytes | None = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        p.mkdir()
    else:
        p.write_bytes(data)
    return p


def _layout(tmp_path: Path) -> tuple[Store, Path, dict[str, Path], dict[str, Path]]:
    store, out = Store(tmp_path / "cache"), tmp_path / "output"
    dead, live = _dead_pid(), os.getpid()
    dl = store.root / "downloads" / "tmp"
    gone = {
        "ingest": _mk(dl / f"ingest-0123456789abcdef.{dead}.1401.tmp"),
        "old part": _age(_mk(dl / "k1.part"), PART_DAYS + 1),
        "old part side": _age(_mk(dl / "k1.part.json", b"{}"), PART_DAYS + 1),
        "workdir": _mk(store.root / "stages" / "tmp" / f"0123456789abcdef.{dead}.ab12", None),
        "publish tmp": _mk(out / f".web.tmp-{dead}-x1y2", None),
        "publish old": _mk(out / f".web.old-{dead}", None),
        "pidless publish tmp": _age(_mk(out / ".db.tmp-abc123", None), PIDLESS_DAYS + 1),
        "verify": _mk(out / "verify" / "20260101T000000Z" / "web" / f".verify-{dead}-q9", None),
    }
    kept = {
        "live ingest": _mk(dl / f"ingest-0123456789abcdef.{live}.1401.tmp"),
        "fresh part": _mk(dl / "k2.part"),
        "fresh part side": _mk(dl / "k2.part.json", b"{}"),
        "live workdir": _mk(store.root / "stages" / "tmp" / f"0123456789abcdef.{live}.cd34", None),
        "live publish tmp": _mk(out / f".web.tmp-{live}-z", None),
        "young pidless": _mk(out / ".db.tmp-def456", None),
        "live verify": _mk(out / "verify" / "20260101T000000Z" / "web" / f".verify-{live}-r1", None),
        "output": _mk(out / "web" / "manifest.json", b"{}"),
        "download": _mk(store.root / "downloads" / "sha256" / ("a" * 64)),
    }
    for kind in ("verify-failures", "install-failures"):
        for i in range(KEEP_FAILURES + 2):
            d = _mk(store.root / kind / "web" / f"2026010{i}T000000Z", None)
            _mk(d / "serial.log")
            _age(d, 10 - i)
            (gone if i < 2 else kept)[f"{kind} {i}"] = d
    return store, out, gone, kept


def test_dry_run_lists_and_keeps_everything(tmp_path):
    store, out, gone, kept = _layout(tmp_path)
    report = sweep(store, out, dry_run=True)
    assert sorted(report.removed) == sorted(str(p) for p in gone.values())
    assert all(p.exists() for p in [*gone.values(), *kept.values()])


def test_sweep_removes_only_the_dead(tmp_path):
    store, out, gone, kept = _layout(tmp_path)
    report = sweep(store, out)
    assert sorted(report.removed) == sorted(str(p) for p in gone.values())
    assert [n for n, p in gone.items() if p.exists()] == []
    assert [n for n, p in kept.items() if not p.exists()] == []
    assert sweep(store, out).removed == []          # idempotent


def test_killed_gc_leftover_is_removed(tmp_path):
    """A gc killed mid-delete leaves a renamed-out committed stage (read-only files) in stages/tmp
    under its dead pid; the next sweep finishes the job."""
    store = Store(tmp_path / "cache")
    d = _mk(store.root / "stages" / "tmp" / f"0123456789abcdef.{_dead_pid()}.gc-{'0' * 64}", None)
    _mk(d / "sub" / "f.bin").chmod(0o444)
    (d / "sub").chmod(0o555)
    d.chmod(0o555)
    assert sweep(store, None).removed == [str(d)]
    assert not d.exists()
