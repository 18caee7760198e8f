"""Registry credentials: the environment first, then the Docker config's auths (every key form
``docker login`` writes); the password never appears in a repr."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time

from registry_support import pass_store

from builder.cache.remote.credentials import lookup


def _config(tmp_path, auths) -> dict:
    (tmp_path / "config.json").write_text(json.dumps({"auths": auths}))
    return {"DOCKER_CONFIG": str(tmp_path)}


def test_docker_config_auth_in_every_key_form(tmp_path):
    token = base64.b64encode(b"alice:pa:ss").decode()
    for key in ("reg.example:5000", "https://reg.example:5000", "http://reg.example:5000/v1/"):
        c = lookup("reg.example:5000", _config(tmp_path, {key: {"auth": token}}))
        assert (c.user, c.password) == ("alice", "pa:ss")
        assert "pa:ss" not in repr(c) and "alice" not in repr(c)
    assert lookup("other:5000", _config(tmp_path, {"reg.example:5000": {"auth": token}})) is None


def test_environment_wins_and_junk_is_ignored(tmp_path):
    env = _config(tmp_path, {"reg": {"auth": "!!not base64"}})
    assert lookup("reg", env) is None
    env.update(IRONFORGE_REGISTRY_USER="bob", IRONFORGE_REGISTRY_PASSWORD="x")
    assert lookup("reg", env).user == "bob"
    (tmp_path / "config.json").write_text("{not json")
    assert lookup("reg", {"DOCKER_CONFIG": str(tmp_path)}) is None


# --- credential helpers: the real docker-credential-pass (Debian golang-docker-credential-helpers)
# over a pass store encrypted to a throw-away GnuPG key

def test_real_pass_helper_from_creds_store_and_cred_helpers(tmp_path):
    env = pass_store(tmp_path)
    secret = "s3cret-" + os.urandom(6).hex()
    subprocess.run(["docker-credential-pass", "store"], env=env, check=True, capture_output=True, timeout=60,
                   input=json.dumps({"ServerURL": "reg.example:5000", "Username": "carol", "Secret": secret}).encode())
    cfg = tmp_path / "docker"
    cfg.mkdir()
    env["DOCKER_CONFIG"] = str(cfg)
    (cfg / "config.json").write_text(json.dumps({"credsStore": "pass", "auths": {"reg.example:5000": {}}}))
    c = lookup("reg.example:5000", env)
    assert (c.user, c.password) == ("carol", secret) and "docker-credential-pass" in c.source
    assert secret not in repr(c)
    # nothing stored for another registry: no credentials, and no warning (the store just has none)
    assert lookup("other.example", env) is None
    # a per-registry helper wins over the store; an inline auth is the fallback
    token = base64.b64encode(b"dave:inline").decode()
    (cfg / "config.json").write_text(json.dumps({"credsStore": "nonexistent-store",
                                                 "credHelpers": {"https://reg.example:5000": "pass"},
                                                 "auths": {"other.example": {"auth": token}}}))
    assert lookup("reg.example:5000", env).user == "carol"
    assert lookup("other.example", env).user == "dave"       # store missing: warned, then auths


def test_helper_missing_hostile_failing_or_hanging_gives_no_credentials(tmp_path, caplog):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # STAND-INs for a broken helper: junk output, a crash, a hang (a keyring waiting for a passphrase)
    for name, body in (("junk", "echo not-json-$(cat)"), ("crash", "echo boom >&2; exit 3"), ("hang", "exec sleep 60")):
        p = bindir / f"docker-credential-{name}"
        p.write_text(f"#!/bin/sh\n{body}\n")
        p.chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "DOCKER_CONFIG": str(tmp_path)}
    for store, says in (("junk", "not its JSON"), ("crash", "exit code 3"), ("hang", "still running"),
                        ("absent", "not on PATH"), ("../../bin/sh", "not a plain name")):
        (tmp_path / "config.json").write_text(json.dumps({"credsStore": store}))
        caplog.clear()
        t0 = time.monotonic()
        assert lookup("reg.example", env, helper_timeout=2.0) is None
        assert time.monotonic() - t0 < 15
        assert says in caplog.text and "reg.example" in caplog.text and "not-json-reg" not in caplog.text
