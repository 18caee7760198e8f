"""Secrets and private host files enter cache keys only as tokens, found from the settings table;
neither they nor a digest of them reach meta.json or a published manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from builder import private_inputs, recipe as R, settings
from builder.cache.store import Store
from builder.engine import Engine
from builder.host.accel import Accel
from builder.publish import build_manifest
from builder.stage import Output, StageDef
from builder.stages import customize as customize_stage

ROOT = Path(__file__).resolve().parent.parent
ROOT_PW = "Root-Pw-token-test-77aa"
USER_PW = "User-Pw-token-test-31bb"
MOTD = b"a small private file: PIN 4711\n"


def _consume(ctx, inputs):
    # what the real customize stage would see: the recipe's values, not the tokens
    (ctx.workdir / "out.txt").write_text(str(len(ctx.recipe.get("customize.files"))))
    return Output(files={"out": "out.txt"}, data={"files": [f["path"] for f in ctx.recipe.get("customize.files")]})


FAKE_CUSTOMIZE = StageDef("customize", 1, ("customize",), _consume)
def _consume_users(ctx, inputs):
    (ctx.workdir / "out.txt").write_text(str(len(ctx.recipe.get("customize.users"))))
    return Output(files={"out": "out.txt"}, data={"users": [u["name"] for u in ctx.recipe.get("customize.users")]})


FAKE_INSTALL = StageDef("install", 1, ("customize.root_password", "customize.users"), _consume_users)


def _recipe(tmp_path: Path) -> R.Recipe:
    rdir = tmp_path / "recipes"
    rdir.mkdir(exist_ok=True)
    (rdir / "root.pw").write_text(ROOT_PW + "\n")
    (rdir / "user.pw").write_text(USER_PW + "\n")
    (rdir / "motd").write_bytes(MOTD)
    f = rdir / "r.toml"
    f.write_text(f'extends = "{ROOT / "recipes" / "debian-12-amd64.toml"}"\n'
                 '[customize]\nroot_password = { file = "root.pw" }\n'
                 '[[customize.users]]\nname = "alice"\npassword = { file = "user.pw" }\n'
                 '[[customize.files]]\npath = "/etc/motd"\nsource = "motd"\n')
    return R.load(str(f))


def test_secret_and_private_file_settings_come_from_the_table():
    assert set(settings.secret_paths()) == {"customize.root_password", "customize.users[].password",
                                            "windows.product_key", "windows.admin_password",
                                            "windows.users[].password"}
    assert settings.host_file_paths(private=True) == ["customize.files[].source"]
    assert set(settings.host_file_paths()) == {"customize.files[].source", "sources[].path", "build.keyring"}
    # the customize stage keeps no digest pin of its own: the engine tokenises the file
    assert customize_stage.STAGE.pins is None


def test_tokens_replace_secrets_and_file_contents(tmp_path):
    r = _recipe(tmp_path)
    users = private_inputs.tokenise(r, "customize.users", r.get("customize.users"))
    assert users[0]["name"] == "alice"
    assert users[0]["password"]["ref"] == {"file": "user.pw"}
    assert users[0]["password"]["token"].startswith("scrypt:")
    files = private_inputs.tokenise(r, "customize", r.get("customize"))["files"]
    assert files[0]["source"]["path"] == "motd" and files[0]["source"]["token"].startswith("scrypt:")
    # a value no setting marks private is left as it is
    assert private_inputs.tokenise(r, "customize.hostname", "h") == "h"


def test_nothing_private_in_meta_json_or_manifest_yet_changes_rerun(tmp_path):
    r = _recipe(tmp_path)
    engine = Engine(store=Store(tmp_path / "cache"), accel=Accel("tcg", "test"))
    first = engine.run(r, [FAKE_INSTALL, FAKE_CUSTOMIZE])
    manifest = json.dumps(build_manifest(first, engine.accel, None))
    written = manifest + "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    metas = list((tmp_path / "cache").rglob("meta.json"))
    assert len(metas) == 2 and all("scrypt:" in m.read_text() for m in metas)   # keyed by tokens
    for private in (ROOT_PW, USER_PW, MOTD.decode().strip(), hashlib.sha256(MOTD).hexdigest(),
                    hashlib.sha256(ROOT_PW.encode()).hexdigest()):
        assert private not in written
    # a changed file or password re-runs exactly the stages reading it, named by key path
    (r.dir / "motd").write_bytes(MOTD + b"changed\n")
    plan = {s.stage.name: s for s in engine.plan(r, [FAKE_INSTALL, FAKE_CUSTOMIZE])}
    assert plan["install"].hit and not plan["customize"].hit
    assert "customize.files changed" in plan["customize"].reason
    (r.dir / "user.pw").write_text("another\n")
    plan = {s.stage.name: s for s in engine.plan(r, [FAKE_INSTALL, FAKE_CUSTOMIZE])}
    assert not plan["install"].hit and "customize.users changed" in plan["install"].reason
