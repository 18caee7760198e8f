"""The part of a recipe a stage may see: the keys its ``StageDef.reads`` declares.

A stage's cache key holds exactly the recipe values it declares. A read of any other key would
make its output depend on something the key does not, and a later build that changed that
value would get a stale hit. The view turns such a read into an error the first time the
stage runs, naming the stage and the key (osbuild isolates its stages the same way).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import UndeclaredRead

if TYPE_CHECKING:
    from builder.recipe import Recipe


class RecipeView:
    """Read-only ``Recipe`` look-alike limited to ``reads`` (a prefix covers its subtree).
    The recipe's identity (name, file, folder, digest) is always readable: it is not a value."""

    __slots__ = ("_recipe", "_stage", "_reads")

    def __init__(self, recipe: "Recipe", stage: str, reads: tuple[str, ...]):
        self._recipe = recipe
        self._stage = stage
        self._reads = tuple(reads)

    def allows(self, key: str) -> bool:
        return key == "name" or any(key == r or key.startswith(r + ".") for r in self._reads)

    def _check(self, *keys: str, via: str | None = None) -> None:
        for key in keys:
            if not self.allows(key):
                what = f"recipe.{via} (key {key!r})" if via else f"recipe key {key!r}"
                raise UndeclaredRead(
                    f"stage {self._stage} read {what}, which its StageDef.reads does not declare; "
                    f"its cache key would not change with it",
                    hint=f"add {key!r} to the reads of stage {self._stage}")

    def get(self, key: str, *default: Any) -> Any:
        self._check(key)
        return self._recipe.get(key, *default)

    # -- identity: always allowed -----------------------------------------------------------
    @property
    def name(self) -> str:
        return self._recipe.name

    @property
    def path(self) -> Path | None:
        return self._recipe.path

    @property
    def dir(self) -> Path:
        return self._recipe.dir

    @property
    def digest(self) -> str:
        return self._recipe.digest

    @property
    def chain(self) -> tuple[Path, ...]:
        return self._recipe.chain

    # -- values derived from keys: checked against those keys -----------------------------
    @property
    def values(self) -> dict:
        raise UndeclaredRead(f"stage {self._stage} read the whole recipe (recipe.values)",
                             hint="read the declared keys with recipe.get(key)")

    @property
    def arch(self) -> str:
        self._check("arch", via="arch")
        return self._recipe.arch

    @property
    def family(self) -> str:
        self._check("os.family", via="family")
        return self._recipe.family

    @property
    def release(self) -> str:
        self._check("os.release", via="release")
        return self._recipe.release

    @property
    def codename(self) -> str:
        self._check("os.release", via="codename")
        return self._recipe.codename

    @property
    def family_arch(self) -> str:
        self._check("arch", "os.family", via="family_arch")
        return self._recipe.family_arch

    def __repr__(self) -> str:
        return f"RecipeView({self._recipe.name!r}, stage={self._stage!r}, reads={self._reads!r})"
