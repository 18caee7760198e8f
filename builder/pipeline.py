"""Which stages a recipe runs, in order."""

from __future__ import annotations

import importlib

from builder.errors import NotImplementedYet
from builder.recipe import Recipe
from builder.stage import StageDef


# build.method = "convert": stages that live in converters/ (the rest land later)
CONVERT_STAGES = ("import", "inspect", "convert", "drivers", "export")
CONVERT_MODULES = {"import": "converters.stages.import_"}


def stage_names(recipe: Recipe, verify: bool = True) -> list[str]:
    if recipe.get("build.method") == "convert":
        names = list(CONVERT_STAGES)
    elif recipe.family == "windows":
        names = ["fetch", "answer", "install", "drivers", "export"]
    elif recipe.get("build.method") == "installer":
        names = ["fetch", "install", "customize", "drivers", "export"]
    else:
        names = (["fetch"] if recipe.get("sources") else []) + ["bootstrap", "disk", "customize", "drivers", "export"]
    if verify and recipe.get("verify.enabled"):
        names.append("verify")
    return names


def load_stage(name: str, recipe: Recipe) -> StageDef:
    if recipe.get("build.method") == "convert":
        if name not in CONVERT_MODULES:
            raise NotImplementedYet(f"{recipe.name}: conversion stage {name!r} is not implemented yet",
                                    hint="`ironforge convert --import-only` runs the import alone")
        return importlib.import_module(CONVERT_MODULES[name]).STAGE
    if recipe.family == "windows":
        raise NotImplementedYet(f"{recipe.name}: Windows images are not implemented yet (stage {name})")
    try:
        mod = importlib.import_module(f"builder.stages.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"builder.stages.{name}":
            raise NotImplementedYet(f"{recipe.name}: stage {name!r} is not implemented yet") from None
        raise
    return mod.STAGE


def stages_for(recipe: Recipe, verify: bool = True) -> list[StageDef]:
    return [load_stage(n, recipe) for n in stage_names(recipe, verify)]
