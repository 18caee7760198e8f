"""Host files a recipe may read: only inside its own folder, unless the user widens that.

A recipe is often someone else's file. Without this rule ``source = "/home/me/.ssh/id_ed25519"``
or ``{ file = "../../etc/shadow" }`` would copy a host file into an image that is then shared.
Paths are resolved (``~``, ``..`` and symlinks) before the check, so a symlink inside the folder
that points out of it is refused too. ``--allow-host-path DIR`` (repeatable) or
``IRONFORGE_ALLOW_HOST_PATH`` (directories separated by ``os.pathsep``) add directories.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from builder.errors import UsageError

ENV_VAR = "IRONFORGE_ALLOW_HOST_PATH"
FLAG = "--allow-host-path"


def from_env(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The directories the user allows in ``IRONFORGE_ALLOW_HOST_PATH``."""
    raw = (os.environ if env is None else env).get(ENV_VAR, "")
    return tuple(Path(p) for p in raw.split(os.pathsep) if p)


def roots(recipe_dir: Path | None, allowed: Iterable[Path] = ()) -> tuple[Path, ...]:
    """Resolved directories reads may come from: the recipe's folder first."""
    base = Path(recipe_dir) if recipe_dir else Path.cwd()
    return tuple(_real(str(d), Path.cwd()) for d in (base, *allowed))


def _real(given: str, base: Path) -> Path:
    # realpath, not Path.resolve: a symlink loop must be refused, not raise RuntimeError
    return Path(os.path.realpath(os.path.join(base, os.path.expanduser(given))))


def _inside(resolved: Path, ok: tuple[Path, ...]) -> bool:
    return any(resolved.is_relative_to(r) for r in ok)


def _outside_message(key: str, given: str, resolved: Path, recipe: str, folder: Path) -> str:
    where = f" (resolves to {resolved})" if str(resolved) != given else ""
    whose = f"the recipe's folder {folder}" if recipe in (str(folder), "recipe") \
        else f"the folder of recipe {recipe} ({folder})"
    return f"{key}: host path {given!r}{where} is outside {whose}"


HINT = (f"a recipe reads host files only inside its own folder; to allow another directory, "
        f"pass {FLAG} DIR (repeatable) or set {ENV_VAR}")


def resolve(given: str, recipe_dir: Path | None, allowed: Iterable[Path] = (), *, key: str,
            recipe: str) -> Path:
    """The real path of ``given`` (relative to the recipe's folder), or a UsageError (exit 2)
    naming the path, the recipe and the flag when it lies outside every allowed directory."""
    ok = roots(recipe_dir, allowed)
    resolved = _real(given, ok[0])
    if _inside(resolved, ok):
        return resolved
    raise UsageError(_outside_message(key, given, resolved, recipe, ok[0]), hint=HINT)


def references(values: Mapping[str, Any], file_keys: Iterable[str],
               secret_keys: Iterable[str]) -> list[tuple[str, str]]:
    """Every (key path, host path) in validated ``values``: the settings at ``file_keys`` and the
    ``{ file = … }`` secret references at ``secret_keys`` (table keys, list items as ``[]``)."""
    wanted = set(file_keys)
    secrets = set(secret_keys)
    out: list[tuple[str, str]] = []

    def walk(node: Any, skey: str, dpath: str) -> None:
        if skey in secrets:
            if isinstance(node, dict) and isinstance(node.get("file"), str):
                out.append((dpath, node["file"]))
            return
        if skey in wanted:
            if isinstance(node, str):
                out.append((dpath, node))
            return
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{skey}.{k}" if skey else k, f"{dpath}.{k}" if dpath else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, skey + "[]", f"{dpath}[{i}]")

    walk(values, "", "")
    return out


def outside(values: Mapping[str, Any], recipe_dir: Path, allowed: Iterable[Path],
            file_keys: Iterable[str], secret_keys: Iterable[str]) -> list[tuple[str, str, Path]]:
    """(key path, given, resolved) for each host path of validated ``values`` that lies outside
    the recipe's folder and every allowed directory."""
    ok = roots(recipe_dir, allowed)
    out = []
    for dpath, given in references(values, file_keys, secret_keys):
        resolved = _real(given, ok[0])
        if not _inside(resolved, ok):
            out.append((dpath, given, resolved))
    return out


def expected(folder: Path) -> str:
    """What a recipe problem about a host path expects."""
    return (f"a path inside the recipe's folder {folder} "
            f"(or in a directory allowed with {FLAG} DIR or {ENV_VAR})")
