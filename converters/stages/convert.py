"""Stage ``convert``: the fix-ups, in ONE writable libguestfs launch on qcow2 overlays of the
imported disks (the import's bases are never written).

Linux: the plan converters.linux.fixups makes from the inspect stage's facts (the same bytes this
overlay holds), applied inside the guest; then the image report (kernels, initramfs listings) is
read in the same launch, so the drivers stage checks it without a launch of its own. Windows:
builder.windows.inject (virtio drivers) with the foreign PV services disabled through its
``extra_edits``, in the same launch. The conversion report (every file changed and why, every
command run) is ``conversion.json`` and the artifact's data, which the manifest carries.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from builder import arch as archmod
from builder import qemu_img
from builder.errors import BuildError
from builder.host import guest_os
from builder.host.guestfs_session import Drive, session
from builder.linux import imagereport, releases
from builder.stage import Artifact, Output, StageContext, StageDef
from builder.stages.drivers import modules_for
from converters import container
from converters.linux import fixups, kernel, packages
from converters.stages.inspect import disks

NAME = "convert"
REPORT = "conversion.json"


def plan_for(facts: dict, imp_data: dict, modules) -> fixups.Plan:
    macs = [n.get("mac") for n in ((imp_data.get("vm") or {}).get("nics") or []) if n.get("mac")]
    return fixups.plan(facts, macs, tuple(modules))


def _overlays(ctx: StageContext, imp: Artifact) -> tuple[dict[str, str], list[Path]]:
    files, paths = {}, []
    for i, base in enumerate(disks(imp)):
        name = "image.qcow2" if i == 0 else f"disk{i}.qcow2"
        qemu_img.overlay(base, ctx.workdir / name, what=f"convert overlay {name}")
        files["image" if i == 0 else f"disk{i}"] = name
        paths.append(ctx.workdir / name)
    return files, paths


def _install_kernel(ctx, g, facts: dict, p: fixups.Plan) -> tuple[dict, dict]:
    """The release's kernel into a mounted guest that has none that boots from virtio."""
    rel = releases.find(str(facts["version"]).split(".")[0])
    tmp = ctx.workdir / ".kernel"
    tmp.mkdir()
    try:
        got = packages.fetch(kernel.status_copy(g, tmp / "guest-status"),
                             archmod.family_word("debian", facts["arch"]), rel.codename,
                             [p.kernel_install["package"]], tmp / "apt",
                             mirror=ctx.recipe.get("build.mirror", "http://deb.debian.org/debian"),
                             offline=ctx.offline)
        # its first initramfs is MODULES=list, as every initramfs a conversion builds
        done = kernel.install(g, got, modules_for(ctx.recipe), ctx.log,
                              first_build=kernel.root_modules(facts.get("boot_fstypes") or []))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    new = [{"version": v, "vmlinuz": True, "initrd": True, "virtio": ["virtio_blk"], "virtio_capable": True,
            "xen_pv_only": False, "installed_by": "convert"} for v in kernel.new_kernel_versions(got)]
    return {**facts, "kernels": list(facts.get("kernels") or []) + new}, done


def _linux(ctx, imp, facts, paths) -> dict:
    p = plan_for(facts, imp.data, modules_for(ctx.recipe))
    for step in p.steps():
        ctx.log.info("plan: %s", step)
    with session([Drive(x, "qcow2", readonly=False, discard="besteffort") for x in paths], ctx.accel,
                 what=NAME, smp=min(2, os.cpu_count() or 1)) as g:
        with guest_os.opened(g, what=NAME, want_type="linux", skip_unmountable=True) as guest:
            if guest.root != facts["root"]:
                raise BuildError(f"{NAME}: the root filesystem is {guest.root} here but inspect found "
                                 f"{facts['root']}", hint="the imported disks changed between stages")
            kdone = None
            if p.kernel_install:
                facts, kdone = _install_kernel(ctx, g, facts, p)
                first = p.kernel_install
                # plan again with the new kernel among the facts: the default-kernel pin names it
                p = plan_for(facts, imp.data, modules_for(ctx.recipe))
                p.kernel_install = first
            done = fixups.apply(g, p, facts, ctx.log)
            if kdone:
                done["kernel"] = kdone
            report = imagereport.take(g)
    return {"os": "linux", "plan": p.to_dict(), "done": done, "summary": p.steps(),
            "image_report": report}


def _windows(ctx, facts, paths) -> dict:
    from builder.windows.inject import InjectOptions, inject_session
    from builder.windows.virtio_win import VirtioWinSource
    from converters import windows
    vw_path = ctx.recipe.get("windows.virtio_win.path", None)
    if not vw_path:
        raise BuildError("converting a Windows guest needs virtio-win drivers",
                         hint="set windows.virtio_win.path (an ISO or unpacked tree) in a convert recipe")
    edits = windows.pv_edits(facts["control_set"], facts.get("foreign_services", {}))
    vw_path = Path(vw_path) if Path(vw_path).is_absolute() else ctx.recipe.dir / vw_path
    with VirtioWinSource(vw_path) as vw:
        with session([Drive(x, "qcow2", readonly=False) for x in paths], ctx.accel, what=NAME) as g:
            res = inject_session(g, vw, ctx.workdir / ".inject", InjectOptions(extra_edits=edits))
    rep = res.to_dict()
    summary = [f"{f['action']} {f['path']}" for f in rep["files"] if f["action"] != "same"]
    summary += [f"registry {c['hive']}\\{c['key']} {c['value'] or ''}: {c['why']}" for c in rep["registry"]]
    return {"os": "windows", "inject": rep, "summary": summary}


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    imp, ins = inputs["import"], inputs["inspect"]
    facts = json.loads(ins.path("facts").read_text())
    if facts.get("type") == "rootfs":
        files, data = container.convert(ctx, imp, facts)
        (ctx.workdir / REPORT).write_text(json.dumps(data["conversion"], indent=1) + "\n")
        return Output(files={**files, "report": REPORT}, data=data)
    files, paths = _overlays(ctx, imp)
    data = _linux(ctx, imp, facts, paths) if facts["type"] == "linux" else _windows(ctx, facts, paths)
    (ctx.workdir / REPORT).write_text(json.dumps({k: v for k, v in data.items() if k != "image_report"},
                                                 indent=1) + "\n")
    shutil.rmtree(ctx.workdir / ".inject", ignore_errors=True)   # the hive copies inject worked on
    files["report"] = REPORT
    return Output(files=files, data={"conversion": {k: v for k, v in data.items() if k != "image_report"},
                                     **({"image_report": data["image_report"]} if "image_report" in data else {})})


def pins(ctx: StageContext) -> dict:
    # a container's filesystem UUIDs derive from the recipe's name (as a built disk's do)
    return {"uuid_seed": ctx.recipe.name}


STAGE = StageDef(name=NAME, version=2,
                 # firmware, disk.* and build.mirror: the disk a container is given and where its
                 # kernel comes from
                 reads=("drivers", "windows.virtio_win", "firmware", "disk.size", "disk.partition_table",
                        "build.mirror"),
                 run=run, pins=pins,
                 tools=("qemu-img", "libguestfs", "mke2fs", "sfdisk", "mkfs.fat", "apt-get"),
                 inputs=("import", "inspect"),
                 doc="the fix-ups (Linux: devices, consoles, tools, initramfs, GRUB, network; "
                     "Windows: virtio injection, foreign PV services off; a container: disk, kernel, "
                     "GRUB) in one writable launch")
