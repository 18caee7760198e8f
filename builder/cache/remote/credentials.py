"""Registry credentials: ``IRONFORGE_REGISTRY_USER``/``IRONFORGE_REGISTRY_PASSWORD`` first, then
the Docker config (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``) as the docker
CLI reads it: the registry's ``credHelpers`` entry, else the ``credsStore``, is a credential
helper (``docker-credential-NAME get``, the registry's host on stdin, JSON ``Username``/``Secret``
back: the protocol of docker/docker-credential-helpers); then the ``auths`` entry (``auth`` =
base64 of ``user:password``, as ``docker login`` writes it without a store).

A helper is run bounded (time, output) and only by a plain name found on PATH; one that is
missing, fails or answers junk gives one warning and no credentials. A password never reaches a
log line, an error message or a repr: ``Credentials`` hides it, and a helper's output is never
quoted.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError
from builder.host import proc

log = logging.getLogger("ironforge.remote")

USER_ENV = "IRONFORGE_REGISTRY_USER"
PASSWORD_ENV = "IRONFORGE_REGISTRY_PASSWORD"
MAX_CONFIG = 1 << 20
HELPER_TIMEOUT = 20.0          # a keyring that asks for a passphrase on a CI runner would never answer
MAX_HELPER_OUTPUT = 64 << 10
_HELPER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")   # docker-credential-NAME: a name, never a path


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)
    source: str = ""            # where they came from, for messages: never the values

    def __repr__(self) -> str:
        return f"Credentials(user=<hidden>, source={self.source!r})"


def _config_path(env: dict[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".docker" / "config.json"


def _host_of(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000`` (docker writes auths keys in several forms)."""
    k = key.strip()
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix):]
    return k.split("/", 1)[0].lower()


def helper_credentials(name: str, hostport: str, env: dict[str, str], source: str,
                       timeout: float = HELPER_TIMEOUT) -> Credentials | None:
    """``docker-credential-NAME get`` for ``hostport``; None (after one warning, unless the
    helper simply has nothing for this registry) when it gives nothing usable."""
    if not _HELPER.fullmatch(name):
        log.warning("remote cache: credential helper name %r in %s is not a plain name; not run; no "
                    "credentials for %s", name, source, hostport)
        return None
    exe = shutil.which(f"docker-credential-{name}", path=env.get("PATH"))
    if exe is None:
        log.warning("remote cache: credential helper docker-credential-%s (%s) is not on PATH; "
                    "no credentials for %s", name, source, hostport)
        return None
    try:
        r = proc.run([exe, "get"], what=f"docker-credential-{name} get", timeout=timeout,
                     input=hostport, env=env, check=False)
    except BuildError as exc:          # timed out: killed with its group
        log.warning("remote cache: %s; no credentials for %s", exc.message, hostport)
        return None
    if r.returncode != 0:
        # "credentials not found in native keychain": the store simply has none for this host
        if "not found" not in (r.stdout + r.stderr).lower():
            log.warning("remote cache: docker-credential-%s get failed (exit code %d); no credentials for %s",
                        name, r.returncode, hostport)
        return None
    try:
        if len(r.stdout) > MAX_HELPER_OUTPUT:
            raise ValueError("too long")
        doc = json.loads(r.stdout)
        user, secret = doc["Username"], doc["Secret"]
        if not isinstance(user, str) or not isinstance(secret, str):
            raise ValueError("not strings")
    except (ValueError, KeyError, TypeError):
        log.warning("remote cache: docker-credential-%s gave an answer that is not its JSON (not shown); "
                    "no credentials for %s", name, hostport)
        return None
    if not user and not secret:
        return None     # docker-credential-pass 0.6 answers "not found" as exit 0 with empty fields
    return Credentials(user, secret, f"docker-credential-{name} ({source})")


def _helper_name(data: dict, hostport: str) -> str | None:
    helpers = data.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if isinstance(key, str) and _host_of(key) == hostport and isinstance(name, str):
                return name
    store = data.get("credsStore")
    return store if isinstance(store, str) and store else None


def lookup(hostport: str, env: dict[str, str] | None = None,
           helper_timeout: float = HELPER_TIMEOUT) -> Credentials | None:
    env = dict(os.environ) if env is None else env
    if env.get(USER_ENV) and env.get(PASSWORD_ENV) is not None:
        return Credentials(env[USER_ENV], env[PASSWORD_ENV], f"${USER_ENV}/${PASSWORD_ENV}")
    path = _config_path(env)
    try:
        if path.stat().st_size > MAX_CONFIG:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    want = hostport.lower()
    helper = _helper_name(data, want)
    if helper is not None:
        got = helper_credentials(helper, hostport, env, str(path), helper_timeout)
        if got is not None:
            return got
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if not isinstance(key, str) or _host_of(key) != want or not isinstance(entry, dict):
            continue
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"], str(path))
        auth = entry.get("auth")
        if isinstance(auth, str):
            try:
                user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            if sep:
                return Credentials(user, password, str(path))
    return None
