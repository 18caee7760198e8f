"""Registry credentials: the environment first, then the Docker config's auths (every key form
``docker login`` writes); the password never appears in a repr."""

from __future__ import annotations

import base64
import json

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
