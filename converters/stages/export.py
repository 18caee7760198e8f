"""Stage ``export`` of a conversion: the export builds use (builder.stages.export), describing
the machine the source VM was (its vCPUs, memory, firmware and NIC MACs from the OVF, VMX or
domain XML; a bare disk's defaults otherwise), not a recipe's verify shape. The import stage's
facts reach this stage through the cache key chain (import → … → export)."""

from __future__ import annotations

from builder.exports import machine as machinemod
from builder.stage import Artifact, Output, StageContext, StageDef
from builder.stages import export as shared


def machine_for(recipe, vm: dict | None, firmware: str | None = None) -> machinemod.Machine:
    """The source VM's shape named after the recipe; its arch and firmware are what inspection
    found (the recipe carries them: converters/command.py ``recipe_from_inspection``)."""
    if not vm:
        return machinemod.from_recipe(recipe)
    return machinemod.from_source_vm(vm, name=recipe.name,
                                     arch=recipe.arch,
                                     firmware=firmware or recipe.get("firmware"))


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    imp = inputs.get("import")
    vm = machine_for(ctx.recipe, imp.data.get("vm") if imp else None)
    return shared.write(ctx, inputs["previous"].image, vm)


STAGE = StageDef(name="export", version=shared.STAGE.version, reads=shared.STAGE.reads, run=run,
                 tools=shared.STAGE.tools,
                 doc="The shared export, describing the source VM's machine (CPUs, memory, firmware, MACs).")
