"""builder/stages/fetch.py: files hard-linked into the work dir, data per file, pins."""

from __future__ import annotations

import hashlib
import logging

import pytest

from builder.cache.store import Store
from builder.host.accel import Accel
from builder.recipe import Recipe
from builder.stage import StageContext
from builder.stages import fetch as stage

from fetch_support import Route


def ctx_for(recipe, store: Store, workdir, signer, fast, offline=False) -> StageContext:
    workdir.mkdir(parents=True, exist_ok=True)
    from builder.recipe_view import RecipeView  # what the engine hands the stage
    return StageContext(recipe=RecipeView(recipe, stage.STAGE.name, stage.STAGE.reads),
                        accel=Accel("tcg", "test"), store=store, workdir=workdir,
                        log=logging.getLogger("ironforge.test"), offline=offline,
                        options={"fetch_keyrings": [signer.keyring], "fetch_options": fast})


def test_stage_run_and_pins(serve_archive, signer, server, store, fast, tmp_path):
    mirror, arc = serve_archive(images=False)
    blob = b"some firmware"
    url = server.add(server.unique("fw.bin"), Route(data=blob))
    local = tmp_path / "seed.txt"
    local.write_text("seed v1")
    recipe = Recipe(name="t", path=tmp_path / "t.toml", values={
        "arch": "amd64", "os": {"family": "debian", "release": "12"},
        "build": {"method": "installer", "mirror": mirror},
        "sources": [
            {"name": "installer", "debian_installer": {"release": "12", "image": "netboot"}},
            {"name": "fw", "url": url, "sha256": hashlib.sha256(blob).hexdigest()},
            {"name": "seed", "path": "seed.txt"},
        ]})
    assert stage.STAGE.name == "fetch" and stage.STAGE.tools == ("gpgv",)
    assert stage.STAGE.reads == ("sources", "arch", "os.family", "build.mirror")  # os.family: family_arch

    ctx = ctx_for(recipe, store, tmp_path / "work", signer, fast)
    out = stage.run(ctx, {})
    assert out.files == {"installer.kernel": "installer.kernel", "installer.initrd": "installer.initrd",
                         "fw": "fw", "seed": "seed"}
    k = ctx.workdir / "installer.kernel"
    assert k.read_bytes() == arc.kernel
    assert k.stat().st_ino == store.download_path(hashlib.sha256(arc.kernel).hexdigest()).stat().st_ino
    assert out.data["fw"]["sha256"] == hashlib.sha256(blob).hexdigest()
    assert out.data["installer.initrd"]["size"] == len(arc.initrd)
    assert "SHA256SUMS" in out.data["installer.initrd"]["verified_by"]

    pins = stage.pins(ctx)
    inrel = (arc.root / "dists/bookworm/InRelease").read_bytes()
    assert pins["installer"]["inrelease_sha256"] == hashlib.sha256(inrel).hexdigest()
    assert pins["fw"] == {"sha256": hashlib.sha256(blob).hexdigest()}
    assert pins["seed"] == {"sha256": hashlib.sha256(b"seed v1").hexdigest()}
    # a changed local file changes the pin; offline pins come from the cache
    local.write_text("seed v2")
    offline = ctx_for(recipe, store, tmp_path / "work2", signer, fast, offline=True)
    pins2 = stage.pins(offline)
    assert pins2["seed"] != pins["seed"] and pins2["installer"] == pins["installer"]
    # offline run: everything from the cache
    out2 = stage.run(offline, {})
    assert (offline.workdir / "seed").read_text() == "seed v2"
    assert out2.data["installer.kernel"] == out.data["installer.kernel"]


def test_engine_refetches_exactly_when_the_archive_changes(serve_archive, signer, server, store,
                                                           fast, tmp_path):
    from builder.engine import Engine
    from fetch_support import build_archive

    mirror, arc = serve_archive(images=False)
    recipe = Recipe(name="t", path=None, values={
        "arch": "amd64", "os": {"family": "debian", "release": "12"},
        "build": {"method": "installer", "mirror": mirror},
        "sources": [{"name": "installer", "debian_installer": {"release": "12", "image": "netboot"}}]})
    engine = Engine(store=store, accel=Accel("tcg", "test"),
                    options={"fetch_keyrings": [signer.keyring], "fetch_options": fast})
    first = engine.run(recipe, [stage.STAGE])
    assert [s.hit for s in first.steps] == [False]
    # InRelease was asked for once: the stage resolved the installer from the pinned copy
    inrelease_route = server.httpd.routes[mirror.removeprefix(server.base) + "/dists/bookworm/InRelease"]
    assert len(inrelease_route.requests) == 1
    assert first.artifacts["fetch"].path("installer.kernel").read_bytes() == arc.kernel
    assert [s.hit for s in engine.run(recipe, [stage.STAGE]).steps] == [True]
    # upstream publishes a new installer: a new signed InRelease at the same mirror
    arc2 = build_archive(tmp_path / "archive-new", signer)
    server.add_tree(mirror.removeprefix(server.base), arc2.root)
    third = engine.run(recipe, [stage.STAGE])
    assert third.steps[0].hit is False and "installer" in third.steps[0].reason
    assert third.artifacts["fetch"].path("installer.kernel").read_bytes() == arc2.kernel


def test_run_refuses_an_inrelease_other_than_the_pinned_one(serve_archive, signer, store, fast,
                                                           tmp_path):
    """Another build refreshed the stored InRelease between this build's pin and its run: the
    stage stops rather than build from something its cache key does not name."""
    from builder.errors import FetchError
    mirror, _arc = serve_archive(images=False)
    recipe = Recipe(name="t", path=None, values={
        "arch": "amd64", "os": {"family": "debian", "release": "12"},
        "build": {"method": "installer", "mirror": mirror},
        "sources": [{"name": "installer", "debian_installer": {"release": "12", "image": "netboot"}}]})
    ctx = ctx_for(recipe, store, tmp_path / "work", signer, fast)
    ctx.pins = stage.pins(ctx)
    assert stage.run(ctx, {}).files          # the pinned copy: fine
    ctx2 = ctx_for(recipe, store, tmp_path / "work2", signer, fast)
    ctx2.pins = {"installer": {"inrelease_sha256": "0" * 64}}
    with pytest.raises(FetchError, match="changed while this build ran"):
        stage.run(ctx2, {})
