"""Stage ``export`` of a conversion: the export builds use (builder.stages.export), describing
the machine the source VM was (its vCPUs, memory, firmware and NIC MACs from the OVF, VMX or
domain XML; a bare disk's defaults otherwise), not a recipe's verify shape. The import stage's
facts reach this stage through the cache key chain (import → … → export)."""

from __future__ import annotations

from functools import partial

from builder.exports import machine as machinemod
from builder.stage import Artifact, StageContext, StageDef
from builder.stages import export as shared


def machine_for(recipe, vm: dict | None, firmware: str | None = None) -> machinemod.Machine:
    """The source VM's shape named after the recipe; its arch and firmware are what inspection
    found (the recipe carries them: converters/command.py ``recipe_from_inspection``)."""
    if not vm:
        return machinemod.from_recipe(recipe)
    return machinemod.from_source_vm(vm, name=recipe.name,
                                     arch=recipe.arch,
                                     firmware=firmware or recipe.get("firmware"))


def source_machine(ctx: StageContext, inputs: dict[str, Artifact] | None) -> machinemod.Machine:
    """The import stage's VM facts when the engine passes the artifacts (a run); a plan, which has
    no artifacts, lists the parts as the recipe's machine would key them."""
    imp = (inputs or {}).get("import")
    return machine_for(ctx.recipe, imp.data.get("vm") if imp else None)


STAGE = StageDef(name="export", version=shared.STAGE.version, reads=shared.STAGE.reads,
                 run=partial(shared.run, machine_of=source_machine),
                 parts=partial(shared.parts, machine_of=source_machine), tools=shared.STAGE.tools,
                 doc="The shared export, describing the source VM's machine (CPUs, memory, firmware, MACs).")
