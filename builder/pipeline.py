"""Which stages a recipe runs, in order."""

from __future__ import annotations

import importlib

from builder.errors import NotImplementedYet
from builder.linux import customize as linux_customize
from builder.recipe import Recipe
from builder.stage import StageDef


# build.method = "convert": its own stages live in converters/ (its drivers stage hands Linux
# guests to builder.stages.drivers); export and verify are the ones builds use
CONVERT_STAGES = ("import", "inspect", "convert", "drivers", "export")
CONVERT_MODULES = {"import": "converters.stages.import_", "inspect": "converters.stages.inspect",
                   "convert": "converters.stages.convert", "drivers": "converters.stages.drivers",
                   "export": "converters.stages.export", "verify": "builder.stages.verify"}


def stage_names(recipe: Recipe, verify: bool = True) -> list[str]:
    if recipe.get("build.method") == "convert":
        names = list(CONVERT_STAGES)
    elif recipe.family == "windows":
        names = list(WINDOWS_STAGES)
    elif recipe.get("build.method") == "installer":
        names = ["fetch", "install", "customize", "drivers", "export"]
    else:
        # file-only customizations are applied by the disk stage to the tree (disk.CUSTOMIZING)
        customize = [] if linux_customize.on_host(recipe) else ["customize"]
        names = (["fetch"] if recipe.get("sources") else []) + ["bootstrap", "disk", *customize,
                                                                 "drivers", "export"]
    if verify and recipe.get("verify.enabled"):
        names.append("verify")
    return names


# Windows stages live in builder/windows/stages/ (fetch there also reads what the media hold);
# export is the family-neutral one. bootmedia (a no-prompt copy of the installer for UEFI)
# comes before answer so that a changed password does not copy the installer ISO again.
WINDOWS_STAGES = ("fetch", "bootmedia", "answer", "install", "drivers", "export")
_SHARED_STAGES = ("export",)


def _load_windows_stage(name: str, recipe: Recipe) -> StageDef:
    module = f"builder.stages.{name}" if name in _SHARED_STAGES else f"builder.windows.stages.{name}"
    try:
        return importlib.import_module(module).STAGE
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise NotImplementedYet(f"{recipe.name}: the Windows stage {name!r} is not implemented yet "
                                    f"({module.replace('.', '/')}.py is missing)") from None
        raise


def load_stage(name: str, recipe: Recipe) -> StageDef:
    if recipe.get("build.method") == "convert":
        if name not in CONVERT_MODULES:
            raise NotImplementedYet(f"{recipe.name}: conversion stage {name!r} is not implemented yet",
                                    hint="`ironforge convert --import-only` runs the import alone")
        return importlib.import_module(CONVERT_MODULES[name]).STAGE
    if recipe.family == "windows":
        return _load_windows_stage(name, recipe)
    if name == "disk" and linux_customize.on_host(recipe):
        from builder.stages import disk
        return disk.CUSTOMIZING
    try:
        mod = importlib.import_module(f"builder.stages.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"builder.stages.{name}":
            raise NotImplementedYet(f"{recipe.name}: stage {name!r} is not implemented yet") from None
        raise
    return mod.STAGE


def stages_for(recipe: Recipe, verify: bool = True) -> list[StageDef]:
    if recipe.family == "windows":
        # the user's media first: a shipped Windows recipe names none, and that is the first
        # thing to say (exit 2, with an example), before any stage is looked at
        from builder.windows.inputs import require
        require(recipe)
    return [load_stage(n, recipe) for n in stage_names(recipe, verify)]


def base_image_stages(recipe: Recipe) -> list[StageDef]:
    """bootstrap -> disk -> drivers as this recipe's pipeline has them (its disk stage may apply
    file-only customizations): the Debian base image benches and test fixtures start from, under
    the same keys `ironforge build` uses."""
    return [s for s in stages_for(recipe, verify=False) if s.name in ("bootstrap", "disk", "drivers")]


def plan_facts(recipe: Recipe, store) -> dict:
    """Facts `plan` shows beside the stages: for Windows, the editions the media hold."""
    if recipe.family != "windows":
        return {}
    from builder.windows.inputs import plan_facts as windows_facts
    return windows_facts(recipe, store)
