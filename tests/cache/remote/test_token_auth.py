"""The remote stage cache against the real registry (Debian's docker-registry, distribution 2.8,
on loopback) enforcing token auth: the registry answers ``WWW-Authenticate: Bearer`` and itself
verifies each token the client shows it (signature chained to its rootcertbundle, issuer,
audience, expiry, and the repository and actions granted).

The token server is tests/registry_support.py's ``TokenIssuer``, a STAND-IN (Debian packages no
token server): it checks basic credentials and grants per user. The client side is the real
one: "machines" are tests/remote_child.py processes (as in test_cache.py) whose credentials
come from a Docker config file's ``auths`` entry."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from builder.cache.remote.address import parse
from builder.cache.remote.credentials import Credentials
from builder.cache.remote.registry import Refused, Registry, sha256_digest
from registry_support import SERVICE, Bearer, TokenIssuer, parse_scope, registry, token_key

ROOT = Path(__file__).resolve().parents[3]
CHILD = ROOT / "tests" / "remote_child.py"
REPO = "ironforge/stages"
PULL = [{"type": "repository", "name": REPO, "actions": ["pull"]}]
PULL_ONLY = frozenset({("repository", REPO, frozenset({"pull"}))})
PULL_PUSH = frozenset({("repository", REPO, frozenset({"pull", "push"}))})


def scopes(record: dict) -> frozenset:
    """The scopes a token request asked for, as (type, name, actions): the registry names the
    actions in no fixed order (``pull,push`` or ``push,pull``)."""
    return frozenset((t, n, frozenset(a)) for t, n, a in map(parse_scope, record["scopes"]))


def machine(tmp: Path, name: str, stages: str, url: str, *extra: str, env: dict | None = None) -> tuple[dict, str]:
    cmd = [sys.executable, str(CHILD), str(tmp / name / "cache"), str(tmp / name / "counter"), stages, "--remote", url]
    (tmp / "empty-config.toml").touch()        # not the developer's own configuration
    base = dict(os.environ, IRONFORGE_REGISTRY_USER="", IRONFORGE_REGISTRY_PASSWORD="",
                IRONFORGE_CACHE_REMOTE_READONLY="", IRONFORGE_CONFIG=str(tmp / "empty-config.toml"))
    r = subprocess.run([*cmd, *extra], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**base, **(env or {})})
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout), r.stderr


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def docker_config(folder: Path, hostport: str, user: str, password: str) -> dict:
    """The environment of a machine whose Docker config holds ``user:password`` for the registry
    (an ``auths`` entry, as ``docker login`` writes it without a credential store)."""
    folder.mkdir(parents=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {hostport: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(folder)}


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory):
    """The issuer's throw-away RSA key and self-signed certificate, one per test session."""
    return token_key(tmp_path_factory.mktemp("token-key"))


@pytest.fixture
def passwords() -> dict[str, str]:
    return {u: f"{u}-pw-{os.urandom(6).hex()}" for u in ("builder", "reader", "outsider")}


@pytest.fixture
def treg(tmp_path, signing_key, passwords):
    """The real registry in token mode, and its issuer: ``builder`` may pull and push the stage
    repository, ``reader`` only pull it, ``outsider`` pull and push another repository only."""
    users = {"builder": (passwords["builder"], {REPO: {"pull", "push"}}),
             "reader": (passwords["reader"], {REPO: {"pull"}}),
             "outsider": (passwords["outsider"], {"team/other": {"pull", "push"}})}
    with registry(tmp_path / "registry", issuer=TokenIssuer(signing_key, users)) as server:
        yield server


def tags(server) -> list[str]:
    """The repository's tags, read through the registry's API with a token of the test's own."""
    return server.tags(auth=Bearer(server.issuer.mint("test-observer", PULL)))


def tags_url(server, repo: str = REPO) -> str:
    return f"http://{server.hostport}/v2/{repo}/tags/list"


def test_push_and_pull_with_tokens_the_registry_verifies(treg, tmp_path, passwords):
    server, issuer = treg, treg.issuer
    # the registry does enforce tokens: none, or one signed by a key it does not trust, is refused
    assert requests.get(tags_url(server), timeout=5).status_code == 401
    forged = issuer.mint("builder", PULL, key=token_key(tmp_path / "forger", "forger"))
    assert requests.get(tags_url(server), auth=Bearer(forged), timeout=5).status_code == 401

    env = docker_config(tmp_path / "docker-one", server.hostport, "builder", passwords["builder"])
    one, err1 = machine(tmp_path, "one", "base,layer", server.url(), "-v", env=env)
    assert one["runs"] == ["base", "layer"] and warnings(err1) == [], err1
    keys = [s["key"] for s in one["steps"]]
    assert tags(server) == sorted(keys)
    # what the client asked for: the challenge's own scopes (a pull token for the lookups, then
    # pull+push once an upload is challenged), as builder, every one granted
    asked = [(r["user"], r["service"], scopes(r), r["status"]) for r in issuer.requests]
    assert ("builder", SERVICE, PULL_ONLY, 200) in asked, asked
    assert ("builder", SERVICE, PULL_PUSH, 200) in asked, asked
    assert {(u, st) for u, _, _, st in asked} == {("builder", 200)}
    # a token is kept while the registry accepts it: one token per scope, not one per request
    # (the engine drives the remote from one thread; two stages made ~20 registry requests)
    assert len(asked) == 2, asked

    issuer.requests.clear()
    env2 = docker_config(tmp_path / "docker-two", server.hostport, "builder", passwords["builder"])
    two, err2 = machine(tmp_path, "two", "base,layer", server.url(), "-v", env=env2)
    assert two["runs"] == [] and warnings(err2) == [], err2
    assert [(s["key"], s["reason"]) for s in two["steps"]] == [(k, "pulled") for k in keys]
    assert Path(two["files"]["base"]).read_bytes() == Path(one["files"]["base"]).read_bytes()
    meta = json.loads((Path(two["files"]["layer"]).parent / "meta.json").read_text())
    assert meta["key"] == keys[1] and meta["pulled_from"].startswith(server.url())
    # machine two only read: it never asked for push
    assert issuer.requests and {scopes(r) for r in issuer.requests} == {PULL_ONLY}
    for secret in (passwords["builder"], base64.b64encode(f"builder:{passwords['builder']}".encode()).decode()):
        assert secret not in err1 + err2


def test_a_read_only_users_push_is_refused_by_the_registry_and_nothing_is_published(treg, tmp_path, passwords):
    server, issuer = treg, treg.issuer
    one, _ = machine(tmp_path, "one", "base", server.url(),
                     env=docker_config(tmp_path / "docker-one", server.hostport, "builder", passwords["builder"]))
    base_key = one["steps"][0]["key"]
    assert tags(server) == [base_key]
    blobs_before = server.blobs()
    assert blobs_before

    issuer.requests.clear()
    env = docker_config(tmp_path / "docker-reader", server.hostport, "reader", passwords["reader"])
    two, err = machine(tmp_path, "two", "base,layer", server.url(), "-v", env=env)
    # its pull token works: base comes from the registry, only layer is built here
    assert [s["reason"] for s in two["steps"]][0] == "pulled" and two["runs"] == ["layer"]
    # its push: the issuer was asked for pull+push and granted pull only; the registry refused
    # the upload; the cache said so once, went on pulling only (the stage is built and kept)
    w = warnings(err)
    assert len(w) == 1, err
    assert "refused a push" in w[0] and "refused (HTTP 401)" in w[0] and "pulling only" in w[0], w[0]
    assert server.hostport in w[0]
    push_asks = [r for r in issuer.requests if scopes(r) == PULL_PUSH]
    assert len(push_asks) == 1 and all(r["user"] == "reader" and r["status"] == 200 and r["access"] == PULL
                                       for r in push_asks), issuer.requests
    assert two["steps"][1]["hit"] is False and Path(two["files"]["layer"]).is_file()
    # nothing half-published: no tag, no blob, no upload left open
    assert tags(server) == [base_key]
    assert server.blobs() == blobs_before and server.uploads() == []
    assert passwords["reader"] not in err

    # the reader as it should be run, read-only: the same pull, no push tried, no warning
    issuer.requests.clear()
    three, err3 = machine(tmp_path, "three", "base,layer", server.url(), "--readonly", env=env)
    assert three["runs"] == ["layer"] and warnings(err3) == [], err3
    assert issuer.requests and {scopes(r) for r in issuer.requests} == {PULL_ONLY}


def test_a_wrong_password_is_refused_by_the_token_service_and_never_shown(treg, tmp_path, passwords):
    server, issuer = treg, treg.issuer
    wrong = "wrong-" + passwords["builder"]
    env = docker_config(tmp_path / "docker-wrong", server.hostport, "builder", wrong)
    out, err = machine(tmp_path, "one", "base,layer", server.url(), "-v", env=env)
    assert out["runs"] == ["base", "layer"]                 # built here, as without a registry
    w = warnings(err)
    assert len(w) == 1 and "token service answered HTTP 401" in w[0] and "building locally" in w[0], err
    assert issuer.requests and all(r["user"] == "builder" and r["status"] == 401 and r["access"] is None
                                   for r in issuer.requests), issuer.requests
    assert tags(server) == []
    assert "remote cache" in err            # -v: the log did talk about the remote
    logs = err + json.dumps(out) + (server.root / "registry.log").read_text()
    for secret in (wrong, passwords["builder"], base64.b64encode(f"builder:{wrong}".encode()).decode()):
        assert secret not in logs


def test_a_token_for_another_repository_is_refused_by_the_registry(treg, tmp_path, passwords):
    server, issuer = treg, treg.issuer
    one, _ = machine(tmp_path, "one", "base", server.url(),
                     env=docker_config(tmp_path / "docker-one", server.hostport, "builder", passwords["builder"]))
    base_key = one["steps"][0]["key"]
    # tokens of the test's own: the same request, only the granted repository (or audience) differs
    right = requests.get(tags_url(server), auth=Bearer(issuer.mint("x", PULL)), timeout=5)
    assert right.status_code == 200 and right.json()["tags"] == [base_key]
    other = [{"type": "repository", "name": "team/other", "actions": ["pull", "push"]}]
    wrong = requests.get(tags_url(server), auth=Bearer(issuer.mint("x", other)), timeout=5)
    assert wrong.status_code == 401 and 'error="insufficient_scope"' in wrong.headers["WWW-Authenticate"]
    elsewhere = requests.get(tags_url(server), auth=Bearer(issuer.mint("x", PULL, service="another-registry")),
                             timeout=5)
    assert elsewhere.status_code == 401

    # through the client: outsider's credentials are good, the issuer grants it nothing on this
    # repository, and the registry refuses the empty token: one warning, a local build
    issuer.requests.clear()
    env = docker_config(tmp_path / "docker-outsider", server.hostport, "outsider", passwords["outsider"])
    two, err = machine(tmp_path, "two", "base", server.url(), "-v", env=env)
    assert two["runs"] == ["base"] and two["steps"][0]["reason"] != "pulled"
    w = warnings(err)
    assert len(w) == 1 and "refused (HTTP 401)" in w[0] and "building locally" in w[0], err
    assert issuer.requests and all(r["user"] == "outsider" and r["status"] == 200 and r["access"] == []
                                   for r in issuer.requests), issuer.requests
    assert tags(server) == [base_key] and passwords["outsider"] not in err


# -- the client's token handling, in process (builder.cache.remote.registry.Registry) ---------

def test_an_expired_token_is_refused_by_the_registry_and_replaced_by_the_client(treg, passwords):
    server, issuer = treg, treg.issuer
    reg = Registry(parse(server.url()), Credentials("builder", passwords["builder"], "test"))
    issuer.lifetime = -120          # expired beyond the registry's 60 s leeway
    with pytest.raises(Refused, match=r"HEAD refused \(HTTP 401\)"):
        reg.manifest_head("absent")
    assert [r["status"] for r in issuer.requests] == [200]
    issuer.lifetime = 300           # the client holds a stale token: the registry's 401 gets a fresh one
    assert reg.manifest_head("absent") is None
    assert [r["status"] for r in issuer.requests] == [200, 200]
    assert reg.manifest_head("absent") is None and len(issuer.requests) == 2     # and keeps it


@pytest.mark.parametrize("fields", [("token",), ("access_token",)])
def test_a_token_under_either_name_is_used(treg, passwords, fields):
    """docker's token spec names it ``token``; OAuth2-style servers answer ``access_token``."""
    server, issuer = treg, treg.issuer
    issuer.fields = fields
    reg = Registry(parse(server.url()), Credentials("builder", passwords["builder"], "test"))
    data = b"a blob pushed with a token named " + fields[0].encode()
    reg.blob_push(sha256_digest(data), len(data), lambda: io.BytesIO(data))
    assert sha256_digest(data) in server.blobs() and reg.blob_exists(sha256_digest(data))
