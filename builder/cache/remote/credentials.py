"""Registry credentials: ``IRONFORGE_REGISTRY_USER``/``IRONFORGE_REGISTRY_PASSWORD`` first, then
the ``auths`` of the Docker config (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``;
``auth`` = base64 of ``user:password``, as ``docker login`` writes it). Credential helpers
(``credsStore``/``credHelpers``) are not run.

A password never reaches a log line, an error message or a repr: ``Credentials`` hides it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

USER_ENV = "IRONFORGE_REGISTRY_USER"
PASSWORD_ENV = "IRONFORGE_REGISTRY_PASSWORD"
MAX_CONFIG = 1 << 20


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


def lookup(hostport: str, env: dict[str, str] | None = None) -> Credentials | None:
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
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    want = hostport.lower()
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
