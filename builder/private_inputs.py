"""Recipe values that go into cache keys only as tokens: secret references and the content of
private host files (``customize.files[].source``).

Which settings these are comes from the settings table (``settings.secret_paths()``,
``settings.host_file_paths(private=True)``), never from a list kept here. A token changes when
the secret or the file changes, so the stage re-runs, yet reveals neither: cache keys and
``meta.json`` hold it, and manifests publish no recipe values at all.
"""

from __future__ import annotations

from typing import Any

from builder import hostpaths, secrets, settings
from builder.errors import IronforgeError


def tokenise(recipe, key: str, value: Any) -> Any:
    """``value`` (the recipe's value at dotted ``key``) with every secret reference replaced by
    ``{"ref", "token"}`` and every private host file path by ``{"path", "token"}``."""
    return _walk(recipe, value, key, frozenset(settings.secret_paths()),
                 frozenset(settings.host_file_paths(private=True)))


def _walk(recipe, value: Any, skey: str, secret_at: frozenset, files_at: frozenset) -> Any:
    if skey in secret_at and isinstance(value, dict):
        return {"ref": value, "token": _secret_token(recipe, value)}
    if skey in files_at and isinstance(value, str):
        return {"path": value, "token": _file_token(recipe, value, skey)}
    if isinstance(value, dict):
        return {k: _walk(recipe, v, f"{skey}.{k}" if skey else k, secret_at, files_at)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(recipe, v, skey + "[]", secret_at, files_at) for v in value]
    return value


def _secret_token(recipe, ref: dict) -> str:
    try:
        return secrets.cache_token(ref, recipe.dir, allowed=getattr(recipe, "host_paths", ()))
    except IronforgeError:          # unset or refused: the stage's run() reports it properly
        return "unresolved"


def _file_token(recipe, given: str, skey: str) -> str:
    try:
        path = hostpaths.resolve(given, recipe.dir, getattr(recipe, "host_paths", ()), key=skey,
                                 recipe=str(recipe.path or recipe.name))
        return secrets.content_token(path, skey)
    except (IronforgeError, OSError):   # outside or unreadable: run() reports it properly
        return "unreadable"
