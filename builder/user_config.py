"""The machine's configuration file: settings of a host, not of a recipe (the rows are
settings.HOST_SETTINGS), such as the remote stage cache every build on a CI runner should use.

Found at ``$IRONFORGE_CONFIG`` when set (then it must exist), else
``$XDG_CONFIG_HOME/ironforge/config.toml`` (``~/.config/ironforge/config.toml``) when present.
A flag on the command line wins over the environment, which wins over this file.

The file is checked like a recipe: TOML errors, unknown keys (with the nearest known one) and
values of the wrong type are usage errors (exit 2) naming the file; nothing in it is guessed.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import settings
from builder.errors import UsageError

ENV = "IRONFORGE_CONFIG"
# a configuration file is a few lines; a huge one is a wrong path, not a configuration
MAX_BYTES = 64 << 10
ROWS = {s.key: s for s in settings.HOST_SETTINGS}


@dataclass(frozen=True)
class UserConfig:
    path: Path | None                       # the file read, or None when there is none
    given: dict[str, Any] = field(default_factory=dict)   # dotted key -> parsed value, as written

    def get(self, key: str) -> Any:
        """The file's value of ``key``, else the row's default."""
        return self.given[key] if key in self.given else ROWS[key].default

    def origin(self, key: str) -> str:
        return f"{self.path} ({key})"


def default_path(env: dict[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "ironforge" / "config.toml"


def _flatten(doc: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in ROWS:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load(env: dict[str, str] | None = None) -> UserConfig:
    env = dict(os.environ) if env is None else env
    named = env.get(ENV)
    path = Path(named) if named else default_path(env)
    if not path.is_file():
        if named:
            raise UsageError(f"${ENV} names {path}, which is not a file",
                             hint=f"create it, or unset {ENV} to use {default_path(env)} when present")
        return UserConfig(None)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"configuration file {path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise UsageError(f"configuration file {path} is over {MAX_BYTES >> 10} KiB; not a configuration",
                         hint=f"check ${ENV} or {default_path(env)}")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"configuration file {path}: not valid TOML ({exc})") from None
    given: dict[str, Any] = {}
    for key, value in _flatten(doc).items():
        row = ROWS.get(key)
        if row is None:
            near = difflib.get_close_matches(key, list(ROWS), n=1)
            raise UsageError(f"configuration file {path}: unknown setting {key!r}"
                             + (f" (did you mean {near[0]!r}?)" if near else ""),
                             hint="known settings: " + ", ".join(ROWS))
        try:
            given[key] = row.type.parse(value)
        except settings.Bad as bad:
            raise UsageError(f"configuration file {path}: {key} must be {bad.expected}") from None
    return UserConfig(path, given)
