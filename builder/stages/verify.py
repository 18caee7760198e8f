"""verify: boot the exported image (through a throw-away overlay) and prove it works.

Reads verify.* (timeout, stall, memory, cpus, checks), arch and firmware from the recipe; CLI knobs come in
``ctx.options``: ``verify_timeout`` (seconds), ``verify_stall`` (seconds), ``verify_checks`` (list of
``NAME`` / ``-NAME`` overrides). On success the artifact holds the serial log and a JUnit file and its data
is the VerifyResult. On failure the engine keeps nothing, so the evidence (serial log, screenshot, result
JSON, JUnit) is copied to ``<cache>/verify-failures/<recipe>/<time>/`` (or ``ctx.options["verify_evidence_dir"]``)
and the VerifyError points there.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from builder.runner import inject_host
from builder.runner.checks import resolve_checks
from builder.runner.report import write_junit
from builder.runner.verify import VerifyResult, VerifyTarget, verify_image
from builder.stage import Artifact, Output, StageContext, StageDef


def target_for(r, image: Path, opts: dict | None = None) -> VerifyTarget:
    """What verifying ``image`` built from recipe ``r`` means; CLI knobs in ``opts`` win."""
    opts = opts or {}
    windows = r.family == "windows"
    return VerifyTarget(
        image=image, name=r.name, arch=r.arch, firmware=r.get("firmware") or "bios",
        memory_mb=int(r.get("verify.memory") or 1024), cpus=int(r.get("verify.cpus") or 1),
        # a Windows first boot under TCG takes many minutes before the probe runs
        timeout=float(opts.get("verify_timeout") or r.get("verify.timeout") or (3600 if windows else 900)),
        stall=float(opts.get("verify_stall") or r.get("verify.stall") or 300),
        checks=tuple(resolve_checks(r.get("verify.checks"), opts.get("verify_checks") or (),
                                    family=r.family)),
        disk_bus=r.get("windows.disk_bus", "virtio-blk") if windows else "virtio-blk")


def _keep_evidence(ctx: StageContext, result: VerifyResult, workdir: Path) -> Path:
    base = ctx.options.get("verify_evidence_dir") if ctx.options else None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = Path(base) if base else ctx.store.root / "verify-failures" / ctx.recipe.name / stamp
    dest.mkdir(parents=True, exist_ok=True)
    for attr in ("serial_log", "screenshot"):
        src = getattr(result, attr)
        if src and Path(src).exists():
            shutil.copy2(src, dest / Path(src).name)
            setattr(result, attr, str(dest / Path(src).name))
    (dest / "verify.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    write_junit([result], dest / "junit.xml")
    return dest


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    export = inputs["export"]
    image = export.image
    # the export key commits to every stage before it: the one key that reproduces this image
    # the NIC the exported description gives (a converted guest keeps its source MAC, which a
    # MAC-matched network configuration needs): the boot proves the machine that is shipped
    macs = (export.data.get("machine") or {}).get("macs") or ()
    # an image this build's own disk stage made: the probe goes in from the host (no appliance)
    disk = inputs.get("disk")
    target = dataclasses.replace(target_for(ctx.recipe, image, ctx.options), cache_keys={"export": export.key},
                                 image_sha256=(export.data.get("qcow2") or {}).get("sha256"),
                                 mac=macs[0] if macs and macs[0] else None,
                                 own_root=inject_host.own_root(disk.data) if disk is not None else None)
    ctx.log.info("verify: checks %s, timeout %.0f s, stall %.0f s", ",".join(target.checks) or "none",
                 target.timeout, target.stall)
    result = verify_image(target, ctx.workdir, accel=ctx.accel)
    if not result.ok:
        where = _keep_evidence(ctx, result, ctx.workdir)
        ctx.log.error("verify: evidence kept in %s", where)
        result.raise_for_status()
    write_junit([result], ctx.workdir / "junit.xml")
    data = result.to_dict()
    # paths inside the artifact are by file name: the artifact directory moves into the cache
    data["serial_log"] = "serial.log"
    data["image"] = image.name
    return Output(files={"serial": "serial.log", "junit": "junit.xml"}, data=data)


STAGE = StageDef(name="verify", version=2, reads=("verify", "arch", "firmware", "os.family", "windows.disk_bus"), inputs=("export", "disk"), run=run,
                 tools=("qemu-system-x86_64", "qemu-img", "libguestfs", "qemu-storage-daemon", "debugfs"),
                 doc="Boot a throw-away overlay of the image with an injected probe; prove it reaches running.")
# inputs: "disk" is there only in bootstrap builds (the image's own layout, for the host-side
# probe injection); every other pipeline verifies through libguestfs's injection
