"""The Windows fetch stage with media by url from a loopback HTTP server (STAND-IN media and
virtio-win: no Microsoft media exist here): digests pinned, plan before and after download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builder import pipeline
from builder import recipe as recipes
from builder.cache.store import Store
from builder.engine import Engine
from builder.errors import ChecksumError
from builder.host.accel import Accel
from builder.windows import inputs
from fetch_support import LoopbackServer, Route
from windows import standin_media as sm

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def served(tmp_path_factory, standin_vw):
    tmp = tmp_path_factory.mktemp("served-media")
    iso = sm.make_media(tmp / "w11.iso", sm.WIN11, tmp).read_bytes()
    vw = standin_vw[1].read_bytes()
    srv = LoopbackServer()
    yield srv, srv.add("/Win11.iso", Route(data=iso)), hashlib.sha256(iso).hexdigest(), \
        srv.add("/virtio-win.iso", Route(data=vw)), hashlib.sha256(vw).hexdigest()
    srv.close()


def _recipe(tmp: Path, url, sha, vw_url, vw_sha) -> recipes.Recipe:
    p = tmp / "my-w11.toml"
    p.write_text(f'extends = "windows-11-amd64"\n[windows.media]\nurl = "{url}"\nsha256 = "{sha}"\n'
                 f'[windows.virtio_win]\nurl = "{vw_url}"\nsha256 = "{vw_sha}"\n')
    return recipes.load(str(p), REPO / "recipes")


def test_media_by_url(tmp_path, monkeypatch, served):
    monkeypatch.setenv("IRONFORGE_WINDOWS_ADMIN_PASSWORD", "x")
    _srv, url, sha, vw_url, vw_sha = served
    r = _recipe(tmp_path, url, sha, vw_url, vw_sha)
    store = Store(tmp_path / "cache")
    before = inputs.plan_facts(r, store)
    assert "not downloaded yet" in before["media"] and "editions" not in before
    eng = Engine(store=store, accel=Accel("tcg", "test"))
    fetch = pipeline.load_stage("fetch", r)
    step = eng.plan(r, [fetch])[0]
    assert step.material["pins"] == {"installer": {"sha256": sha, "url": url},
                                     "virtio_win": {"sha256": vw_sha, "url": vw_url}}
    res = eng.run(r, [fetch])
    art = res.artifacts["fetch"]
    assert hashlib.sha256(art.path("installer").read_bytes()).hexdigest() == sha
    assert art.data["installer"]["sha256"] == sha and art.data["virtio_win"]["sha256"] == vw_sha
    assert art.data["edition"]["name"] == "Windows 11 Pro" and art.data["version"]["osinfo"] == "win11"
    after = inputs.plan_facts(r, store)                  # now at hand in the download store
    assert after["selected"].startswith("1: 'Windows 11 Pro'")


def test_wrong_digest_refused_and_nothing_kept(tmp_path, monkeypatch, served):
    monkeypatch.setenv("IRONFORGE_WINDOWS_ADMIN_PASSWORD", "x")
    _srv, url, sha, vw_url, vw_sha = served
    r = _recipe(tmp_path, url, "0" * 64, vw_url, vw_sha)
    eng = Engine(store=Store(tmp_path / "cache"), accel=Accel("tcg", "test"))
    with pytest.raises(ChecksumError):
        eng.run(r, [pipeline.load_stage("fetch", r)])
    assert not list((tmp_path / "cache").glob("stages/*/meta.json"))
