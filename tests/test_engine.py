"""Stage engine: cache keys, hits and misses, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine_fakes as F

HERE = Path(__file__).parent


@pytest.fixture
def dirs(tmp_path):
    cache, counter = tmp_path / "cache", tmp_path / "counter"
    counter.mkdir()
    return cache, counter


def test_second_run_is_all_hits(dirs):
    cache, counter = dirs
    eng = F.engine(cache, counter)
    r1 = eng.run(F.recipe(x=1, y=2), [F.A, F.B])
    assert [s.hit for s in r1.steps] == [False, False]
    r2 = eng.run(F.recipe(x=1, y=2), [F.A, F.B])
    assert [s.hit for s in r2.steps] == [True, True]
    assert F.runs(counter) == ["a", "b"]
    assert r2.artifacts["b"].path("out").read_text() == "a:1|b:2"


def test_changed_value_reruns_reader_and_later_only(dirs):
    cache, counter = dirs
    eng = F.engine(cache, counter)
    eng.run(F.recipe(x=1, y=2, z=0), [F.A, F.B, F.C])
    r = eng.run(F.recipe(x=1, y=3, z=0), [F.A, F.B, F.C])
    assert [s.hit for s in r.steps] == [True, False, False]
    assert F.runs(counter) == ["a", "b", "c", "b", "c"]
    assert r.steps[1].reason == "y changed"
    assert r.steps[2].reason == "input b changed"
    assert r.artifacts["b"].path("out").read_text() == "a:1|b:3"


def test_plan_explains_misses(dirs):
    cache, counter = dirs
    eng = F.engine(cache, counter)
    steps = eng.plan(F.recipe(x=1, y=2), [F.A, F.B])
    assert [(s.hit, s.reason) for s in steps] == [(False, "never built"), (False, "never built")]
    eng.run(F.recipe(x=1, y=2), [F.A, F.B])
    steps = eng.plan(F.recipe(x=5, y=2), [F.A, F.B])
    assert [(s.hit, s.reason) for s in steps] == [(False, "x changed"), (False, "input a changed")]
    assert eng.plan(F.recipe(x=1, y=2), [F.A, F.B])[0].hit


def test_reason_names_the_deepest_key():
    from builder.engine import diff_reason
    old = {"version": 1, "reads": {"customize": {"hostname": "a", "users": [1]}}}
    new = {"version": 1, "reads": {"customize": {"hostname": "b", "users": [1]}}}
    assert diff_reason(old, new) == "customize.hostname changed"
    old = {"version": 1, "reads": {"customize.root_password": {"ref": {"env": "PW"}, "token": "scrypt:1"}}}
    new = {"version": 1, "reads": {"customize.root_password": {"ref": {"env": "PW"}, "token": "scrypt:2"}}}
    assert diff_reason(old, new) == "customize.root_password changed"


def test_stage_version_bump_misses(dirs):
    cache, counter = dirs
    eng = F.engine(cache, counter)
    eng.run(F.recipe(x=1), [F.A])
    a2 = F.StageDef("a", 2, ("x",), F.A.run)
    r = eng.run(F.recipe(x=1), [a2])
    assert not r.steps[0].hit and r.steps[0].reason == "stage version 1 -> 2"


def test_failed_stage_leaves_nothing(dirs):
    cache, counter = dirs
    eng = F.engine(cache, counter)

    def boom(ctx, inputs):
        (ctx.workdir / "half.bin").write_bytes(b"x" * 100)
        raise RuntimeError("stage exploded")

    with pytest.raises(RuntimeError):
        eng.run(F.recipe(x=1), [F.A, F.StageDef("boom", 1, (), boom)])
    stages = cache / "stages"
    complete = [d for d in stages.iterdir() if (d / "meta.json").exists()]
    assert len(complete) == 1  # only stage a
    assert not any((stages / "tmp").iterdir())


def test_sigkill_mid_write_then_resume(dirs):
    """A real subprocess is SIGKILLed while a stage writes; the cache stays consistent and
    the next run resumes after the last finished stage."""
    cache, counter = dirs
    env = dict(os.environ, PYTHONPATH=f"{HERE}:{HERE.parent}")
    proc = subprocess.Popen([sys.executable, str(HERE / "engine_fakes.py"), str(cache), str(counter), "0.2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = counter / "slow.started"
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "slow stage never started"
        time.sleep(0.05)
    time.sleep(0.5)  # let it write part of the file
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert F.runs(counter) == ["a", "b", "slow"]
    # the killed stage's half-written dir is in tmp, never a stage dir with meta
    from builder.cache.store import Store
    store = Store(cache)
    metas = [d for d in (cache / "stages").iterdir() if d.name != "tmp"]
    assert all(store.read_meta(d.name) is not None for d in metas)
    assert len(metas) == 2
    assert any((cache / "stages" / "tmp").iterdir())  # the leftover exists until the next run

    eng = F.engine(cache, counter, slow_delay=0)
    r = eng.run(F.recipe(x=1, y=2, z=3), [F.A, F.B, F.SLOW, F.C])
    assert [s.hit for s in r.steps] == [True, True, False, False]
    assert F.runs(counter) == ["a", "b", "slow", "slow", "c"]
    assert r.artifacts["c"].path("out").read_text() == str(40 << 20)
    assert not any((cache / "stages" / "tmp").iterdir())  # the dead run's work dir was removed


def test_incomplete_meta_is_not_trusted(dirs):
    cache, counter = dirs
    eng = F.engine(cache, counter)
    r = eng.run(F.recipe(x=1), [F.A])
    d = r.artifacts["a"].dir
    (d / "meta.json").write_text('{"complete": tru')  # torn write
    r2 = eng.run(F.recipe(x=1), [F.A])
    assert not r2.steps[0].hit
    assert F.runs(counter) == ["a", "a"]


def test_two_processes_share_one_key(dirs, tmp_path):
    """Per-key locks: two concurrent builds of the same recipe run each stage once."""
    cache, counter = dirs
    env = dict(os.environ, PYTHONPATH=f"{HERE}:{HERE.parent}")
    procs = [subprocess.Popen([sys.executable, str(HERE / "engine_fakes.py"), str(cache), str(counter), "0.01"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert sorted(F.runs(counter)) == ["a", "b", "c", "slow"]


def test_run_gets_the_pins_its_key_was_computed_from(dirs):
    """Upstream pins are asked once per run and handed to the stage: a stage that re-asked
    could build from a newer upstream than its key names (and costs a second download)."""
    from builder.stage import Output, StageDef
    cache, counter = dirs
    upstream = iter(["rev-1", "rev-2", "rev-3"])      # each question gets a newer answer
    asked, seen = [], []

    def pins(ctx):
        asked.append(next(upstream))
        return {"rev": asked[-1]}

    def run(ctx, inputs):
        seen.append(ctx.pins)
        (ctx.workdir / "o").write_text(ctx.pins["rev"])
        return Output(files={"out": "o"})

    stage = StageDef("pinned", 1, (), run, pins=pins)
    res = F.engine(cache, counter).run(F.recipe(), [stage])
    assert asked == ["rev-1"]
    assert seen == [{"rev": "rev-1"}]
    assert res.artifacts["pinned"].path("out").read_text() == "rev-1"


# -- keys cover code -------------------------------------------------------------------------------

_STAGE_SRC = '''
from pathlib import Path
from builder.stage import Output, StageDef
from . import helper

def run(ctx, inputs):
    prev = inputs["previous"].path("out").read_text() if "previous" in inputs else ""
    (ctx.workdir / "o.txt").write_text(prev + "|" + helper.fmt("{name}", {value}))
    with open(Path(ctx.options["counter_dir"]) / "runs.log", "a") as f:
        f.write("{name}\\n")
    return Output(files={{"out": "o.txt"}})

STAGE = StageDef("{name}", 1, (), run)
'''


@pytest.fixture
def codepkg(tmp_path, monkeypatch):
    """Three stages s1 -> s2 -> s3 in a throw-away package; only s2 imports ``helper``
    (s1 and s3 import ``plain``). ``load`` re-imports them as a new process would."""
    import importlib
    import textwrap
    name = f"ifk_stages_{abs(hash(str(tmp_path))) % 10**8}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def write(stage: str, value: int, helper_import: bool = True) -> None:
        src = _STAGE_SRC.format(name=stage, value=value)
        if not helper_import:
            src = src.replace("from . import helper", "from . import plain as helper")
        (root / f"{stage}.py").write_text(textwrap.dedent(src))

    def helper(body: str) -> None:
        (root / "helper.py").write_text(f"def fmt(n, v):\n    return {body}\n")

    (root / "plain.py").write_text("def fmt(n, v):\n    return f'{n}={v}'\n")
    helper("f'{n}:{v}'")
    write("s1", 1, helper_import=False)
    write("s2", 2)
    write("s3", 3, helper_import=False)

    def load() -> list:
        """The stages as a fresh process would import them."""
        importlib.invalidate_caches()
        for m in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[m]
        return [importlib.import_module(f"{name}.{s}").STAGE for s in ("s1", "s2", "s3")]

    return write, helper, load


def test_editing_a_stages_code_reruns_it_and_later_only(dirs, codepkg):
    """A behaviour change without a version bump is a miss, named in the plan as the file."""
    cache, counter = dirs
    write, _helper, load = codepkg
    r1 = F.engine(cache, counter).run(F.recipe(), load())
    assert [s.hit for s in r1.steps] == [False, False, False]
    assert r1.artifacts["s3"].path("out").read_text() == "|s1=1|s2:2|s3=3"

    write("s2", 20)                                  # same version, new behaviour
    stages = load()
    eng = F.engine(cache, counter)
    plan = eng.plan(F.recipe(), stages)
    assert [s.hit for s in plan] == [True, False, False]
    assert plan[1].reason.startswith("code changed: ifk_stages_") and plan[1].reason.endswith("/s2.py")
    assert plan[2].reason == "input s2 changed"
    r2 = eng.run(F.recipe(), stages)
    assert [s.hit for s in r2.steps] == [True, False, False]
    assert F.runs(counter) == ["s1", "s2", "s3", "s2", "s3"]
    assert r2.artifacts["s3"].path("out").read_text() == "|s1=1|s2:20|s3=3"


def test_editing_a_helper_the_stage_imports_reruns_it(dirs, codepkg):
    cache, counter = dirs
    _write, helper, load = codepkg
    F.engine(cache, counter).run(F.recipe(), load())
    helper("f'{n}->{v}'")                            # only s2 imports helper
    eng = F.engine(cache, counter)
    plan = eng.plan(F.recipe(), load())
    assert [s.hit for s in plan] == [True, False, False]
    assert plan[1].reason.endswith("/helper.py")
    r = eng.run(F.recipe(), load())
    assert r.artifacts["s3"].path("out").read_text() == "|s1=1|s2->2|s3=3"
    assert F.runs(counter) == ["s1", "s2", "s3", "s2", "s3"]


# -- immutable artifacts ---------------------------------------------------------------------------

def _guest_bytes(image: Path, tmp: Path) -> str:
    """sha256 of what a guest would read from ``image`` (its whole backing chain, flattened)."""
    import hashlib
    from builder.host.proc import run
    raw = tmp / f"flat-{time.time_ns()}.raw"
    run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], what="qemu-img convert", timeout=60)
    try:
        return hashlib.sha256(raw.read_bytes()).hexdigest()
    finally:
        raw.unlink()


def test_force_never_changes_a_backing_file_another_layer_uses(dirs, tmp_path):
    """Recipes one and two share the base stage; two's layer has one's base image as its qcow2
    backing file. ``--force`` on one re-runs everything (new, different bytes) and leaves what
    two's guest sees intact, and unforced builds keep hitting the original entries."""
    cache, counter = dirs
    eng = F.engine(cache, counter)
    one, two = F.recipe("one", x=1, y=1), F.recipe("two", x=1, y=2)
    r1 = eng.run(one, [F.BASE, F.LAYER])
    r2 = eng.run(two, [F.BASE, F.LAYER])
    assert [s.hit for s in r2.steps] == [True, False]
    layer2 = r2.artifacts["layer"].image
    before = _guest_bytes(layer2, tmp_path)
    base_before = _guest_bytes(r1.artifacts["base"].image, tmp_path)

    forced = eng.run(one, [F.BASE, F.LAYER], force=True)
    assert [s.hit for s in forced.steps] == [False, False]
    assert F.runs(counter) == ["base", "layer", "layer", "base", "layer"]
    assert _guest_bytes(layer2, tmp_path) == before                       # two's guest: unchanged
    assert _guest_bytes(forced.artifacts["base"].image, tmp_path) != base_before  # really re-run
    assert forced.artifacts["base"].dir != r1.artifacts["base"].dir       # built under a new key
    assert _guest_bytes(r1.artifacts["base"].image, tmp_path) == base_before

    again = eng.run(one, [F.BASE, F.LAYER])
    assert [s.hit for s in again.steps] == [True, True]
    assert again.artifacts["layer"].dir == r1.artifacts["layer"].dir


def test_committed_files_are_read_only(dirs):
    cache, counter = dirs
    r = F.engine(cache, counter).run(F.recipe(x=1), [F.A])
    d = r.artifacts["a"].dir
    modes = {p.name: p.stat().st_mode & 0o777 for p in d.iterdir()}
    assert modes == {"a.txt": 0o444, "meta.json": 0o444}


def test_parts_are_cached_apart_forced_aside_and_leave_nothing_when_they_fail(dirs):
    cache, counter = dirs
    eng = F.engine(cache, counter)
    eng.run(F.recipe(x=1, parts={"one": 1, "two": 2}), [F.A, F.P])
    r = eng.run(F.recipe(x=1, parts={"one": 1, "two": 3, "three": 3}), [F.A, F.P])
    assert F.runs(counter) == ["a", "part-one", "part-two", "gather", "part-two", "part-three", "gather"]
    assert [(p.name, p.hit, p.reason) for p in r.steps[1].parts] == [
        ("p[one]", True, "cached"), ("p[two]", False, "n changed"), ("p[three]", False, "never built")]
    assert r.artifacts["p"].path("three").read_text() == "a:1|three:3"
    # the parts' own keys follow the input: a changed input re-makes every part
    r = eng.run(F.recipe(x=2, parts={"one": 1}), [F.A, F.P])
    assert [(p.hit, p.reason) for p in r.steps[1].parts] == [(False, "input a changed")]
    # --force re-makes each part under a key of its own; the original entries stay as they were
    before = {p.key for p in r.steps[1].parts}
    forced = eng.run(F.recipe(x=2, parts={"one": 1}), [F.A, F.P], force=True)
    assert {p.key for p in forced.steps[1].parts}.isdisjoint(before)
    assert all(eng.store.read_meta(k) is not None for k in before)
    # a failing part leaves no entry and no work dir; the parts made before it stay cached
    with pytest.raises(RuntimeError):
        eng.run(F.recipe(x=2, parts={"one": 1, "bad": 1}), [F.A, F.P])
    assert not any((cache / "stages" / "tmp").iterdir())
    r = eng.run(F.recipe(x=2, parts={"one": 1, "four": 4}), [F.A, F.P])
    assert [(p.name, p.hit) for p in r.steps[1].parts] == [("p[one]", True), ("p[four]", False)]
