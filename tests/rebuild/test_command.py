"""rebuild_one over a signed loopback suite and the stand-in pipeline (real engine, real cache,
real gpgv, real publish): what runs, what is published, what is said."""

from __future__ import annotations

import json
import os

import pytest

import rebuild_support as R
from builder.errors import BuildError
from builder.publish import publish
from builder.rebuild import versions
from builder.rebuild.command import rebuild_one, render


def _rebuild(env, **kw):
    return rebuild_one(env.engine(**kw.pop("opts", {})), env.recipe(**kw.pop("recipe", {})), R.STAGES,
                       env.output, **kw)


def test_first_rebuild_publishes_a_version_and_latest(env):
    o = _rebuild(env)
    folder = env.output / "fleet"
    assert o.status == "published" and o.previous is None
    assert versions.latest_version(folder) == o.version == versions.versions(folder)[0]
    assert os.readlink(folder / "latest") == o.version
    # the flat paths keep working through latest
    assert os.readlink(folder / "fleet.qcow2") == "latest/fleet.qcow2"
    assert json.loads((folder / "manifest.json").read_text())["recipe"]["name"] == "fleet"
    doc = json.loads((folder / o.version / "changes.json").read_text())
    assert doc["changed"]["first_version"] is True and doc["packages"] is None
    assert "first version" in (folder / o.version / "CHANGES.md").read_text()
    assert env.runs() == ["bootstrap", "drivers", "export"]


def test_unchanged_upstream_is_up_to_date_runs_nothing_and_publishes_nothing(env):
    first = _rebuild(env)
    before = sorted(p.name for p in (env.output / "fleet").iterdir())
    n = len(env.runs())
    o = _rebuild(env)
    assert o.status == "up-to-date" and o.version == first.version
    assert len(env.runs()) == n                              # not a single stage ran, not even a hit
    assert sorted(p.name for p in (env.output / "fleet").iterdir()) == before
    assert o.pins["bootstrap"]["inrelease_sha256"] == first.pins["bootstrap"]["inrelease_sha256"]
    lines = render(o)
    assert lines[0] == f"fleet: up to date ({first.version})"
    assert "bookworm InRelease" in lines[1] and "Sat, 11 Jul 2026" in lines[1]


def test_bumped_inrelease_rebuilds_from_bootstrap_and_writes_the_package_diff(env):
    first = _rebuild(env)
    old_sha = first.pins["bootstrap"]["inrelease_sha256"]
    env.suite.bump(openssl="3.0.13-1~deb12u1", libc6="2.36-9+deb12u4", old_tool=None, new_tool="0.1")
    plan = _rebuild(env, dry_run=True)
    assert plan.status == "would-rebuild"
    assert [(s["name"], s["hit"]) for s in plan.stages] == [("bootstrap", False), ("drivers", False), ("export", False)]
    assert plan.stages[0]["reason"] == "upstream inrelease_sha256 changed"
    assert {u["pin"] for u in plan.changed["upstream"]} == {"inrelease_sha256", "release_date"}
    assert versions.versions(env.output / "fleet") == [first.version]   # a dry run publishes nothing
    n = len(env.runs())
    o = _rebuild(env)
    assert env.runs()[n:] == ["bootstrap", "drivers", "export"]
    assert o.status == "published" and o.previous == first.version and o.version != first.version
    folder = env.output / "fleet"
    assert os.readlink(folder / "latest") == o.version
    doc = json.loads((folder / o.version / "changes.json").read_text())
    up = {u["pin"]: u for u in doc["changed"]["upstream"]}
    assert up["inrelease_sha256"]["old"] == old_sha and up["inrelease_sha256"]["new"] != old_sha
    assert up["release_date"]["old"] == "Sat, 11 Jul 2026 10:16:37 UTC"
    assert up["release_date"]["new"] == "Sun, 12 Jul 2026 10:16:37 UTC"
    assert [(s["name"], s["hit"]) for s in doc["stages"]] == [("bootstrap", False), ("drivers", False), ("export", False)]
    pk = doc["packages"]
    assert pk["upgraded"] == [{"name": "libc6", "old": "2.36-9", "new": "2.36-9+deb12u4"},
                              {"name": "openssl", "old": "3.0.11-1", "new": "3.0.13-1~deb12u1"}]
    assert pk["added"] == [{"name": "new-tool", "version": "0.1"}]
    assert pk["removed"] == [{"name": "old-tool", "version": "1.0"}]
    md = (folder / o.version / "CHANGES.md").read_text()
    assert "- upstream: bookworm InRelease (bootstrap): Date Sat, 11 Jul 2026 10:16:37 UTC → Sun, 12 Jul 2026 10:16:37 UTC" in md
    assert "| openssl | 3.0.11-1 | 3.0.13-1~deb12u1 |" in md and "| new-tool | 0.1 |" in md
    # and then it is up to date again
    assert _rebuild(env).status == "up-to-date"


def test_a_recipe_change_reruns_only_the_stage_that_reads_it(env):
    _rebuild(env)
    n = len(env.runs())
    o = _rebuild(env, recipe={"label": "b"})
    assert env.runs()[n:] == ["drivers", "export"]
    assert [s["hit"] for s in o.stages] == [True, False, False]
    assert o.changed["recipe"] == [{"key": "drivers.label", "old": "a", "new": "b"}]
    assert o.changed["upstream"] == [] and o.packages["upgraded"] == []


def test_keep_2_after_three_versions_leaves_two_and_never_latest(env):
    vs = [_rebuild(env, keep=2).version]
    for i in range(2):
        env.suite.bump(openssl=f"3.0.{12 + i}-1")
        vs.append(_rebuild(env, keep=2).version)
    folder = env.output / "fleet"
    assert versions.versions(folder) == vs[1:]
    assert versions.latest_version(folder) == vs[2]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    # cache gc keeps what every kept version's manifest names (and reads no link twice)
    from builder.cache.gc import _manifests
    assert _manifests(env.output) == [folder / v / "manifest.json" for v in vs[1:]]
    # prune itself never deletes what latest names, whatever keep says
    os.remove(folder / "latest")
    os.symlink(vs[1], folder / "latest")
    assert versions.prune(folder, 1) == []
    assert versions.versions(folder) == vs[1:]


def test_a_failing_stage_leaves_latest_and_publishes_nothing(env):
    first = _rebuild(env)
    env.suite.bump(openssl="9.9-1")
    with pytest.raises(BuildError, match="on purpose"):
        _rebuild(env, opts={"fail_export": True})
    folder = env.output / "fleet"
    assert versions.latest_version(folder) == first.version
    assert versions.versions(folder) == [first.version]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    n = len(env.runs())
    o = _rebuild(env)                      # the cause gone: bootstrap and drivers are cache hits
    assert env.runs()[n:] == ["export"] and o.status == "published"


def test_a_flat_output_from_build_is_migrated_to_versions(env):
    eng = env.engine()
    result = eng.run(env.recipe(), R.STAGES)
    flat = publish(result, env.output, eng.accel, None)
    image = (flat / "fleet.qcow2").read_bytes()
    o = _rebuild(env)
    assert o.status == "up-to-date"            # same keys as the flat output: nothing to do, nothing moved
    assert not versions.is_versioned(flat)
    env.suite.bump(openssl="3.0.99-1")
    o = _rebuild(env)
    folder = env.output / "fleet"
    assert versions.is_versioned(folder)
    legacy, new = versions.versions(folder)
    assert o.previous == legacy and o.version == new
    assert (folder / legacy / "fleet.qcow2").read_bytes() == image      # the old output, whole
    assert o.packages["upgraded"] == [{"name": "openssl", "old": "3.0.11-1", "new": "3.0.99-1"}]
    assert o.changed["upstream"]                                       # inputs from the cache entries


def test_build_into_a_versioned_folder_adds_a_version(env):
    first = _rebuild(env)
    eng = env.engine()
    result = eng.run(env.recipe(label="z"), R.STAGES)
    out = versions.publish_output(result, env.output, eng.accel, None, eng.store)
    folder = env.output / "fleet"
    assert out.parent == folder and out.name != first.version
    assert versions.versions(folder) == [first.version, out.name]
    assert versions.latest_version(folder) == out.name
    doc = json.loads((out / "changes.json").read_text())
    assert doc["changed"]["recipe"] == [{"key": "drivers.label", "old": "a", "new": "z"}]


def test_a_report_hook_writes_into_the_version_before_it_is_sealed(env):
    seen = {}

    def report(d, result, changes):
        seen["stages"] = [s.name for s in result.steps]
        (d / "report.html").write_text(f"<p>{changes['version']}</p>")

    o = _rebuild(env, report=report)
    page = env.output / "fleet" / o.version / "report.html"
    assert page.read_text() == f"<p>{o.version}</p>" and page.stat().st_mode & 0o222 == 0
    assert seen["stages"] == ["bootstrap", "drivers", "export"]
    assert os.readlink(env.output / "fleet" / "report.html") == "latest/report.html"
