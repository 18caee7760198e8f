"""Recipe: a validated TOML document with defaults applied (loader lands next)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import arch as archmod

_MISSING = object()


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path | None
    values: dict[str, Any]                     # nested, validated, defaults applied
    digest: str = ""                           # sha256 of the canonical JSON of ``values``
    chain: tuple[Path, ...] = field(default_factory=tuple)  # files merged via ``extends``

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """Value at a dotted key path, e.g. ``recipe.get("customize.hostname")``."""
        node: Any = self.values
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif default is not _MISSING:
                return default
            else:
                raise KeyError(key)
        return node

    @property
    def arch(self) -> str:
        """Internal arch word: 'x86_64' or 'i686'."""
        return archmod.normalise(self.values["arch"])

    @property
    def family(self) -> str:
        return self.values["os"]["family"]

    @property
    def release(self) -> str:
        return str(self.values["os"]["release"])

    @property
    def family_arch(self) -> str:
        """The OS family's own arch word (Debian 'amd64'/'i386')."""
        return archmod.family_word(self.family, self.arch)
