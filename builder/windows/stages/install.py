"""Stage ``install`` (Windows): unattended Windows Setup onto a blank virtio disk.

QEMU boots the installer ISO (the no-prompt copy from ``bootmedia`` under UEFI) with the answer
ISO (``autounattend.xml`` and the virtio drivers under ``$WinPEDriver$``) as a second CD, a blank
qcow2 system disk of ``disk.size`` on virtio-blk or virtio-scsi, and virtio-net; OVMF (with
Microsoft's Secure Boot keys and a swtpm TPM 2.0 when asked) or SeaBIOS. Setup's reboots stay
inside the run. Progress comes from the ``IRONFORGE-WIN pass=…`` lines the answer file prints on
COM1, with a screenshot every ``windows.install.screenshot_every`` seconds (distinct screens are
kept as evidence). The stage ends when the guest powers itself off after ``done``.

On failure (a stall, the timeout, a power-off without ``done``): QEMU is stopped, the COM1 log,
the screenshots and Setup's Panther logs (one read-only libguestfs launch) are kept under
``<cache>/install-failures/<recipe>/<time>/``, and the error names the pass Setup stopped in.

Artifact: ``image`` (the installed disk), ``com1`` (the COM1 log), ``screens`` (screenshots),
``efi_vars`` (UEFI only: the NVRAM Setup wrote); data: passes with their times, the boot route,
TPM and Secure Boot facts.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from builder.errors import BuildError, InstallerError
from builder.host import tools
from builder.host.proc import run as run_tool
from builder.stage import Artifact, Output, StageContext, StageDef
from builder.windows import install_watch, machine as winmachine, noprompt, setup_logs
from builder.windows.stages.bootmedia import media_iso

NAME = "install"
IMAGE = "image.qcow2"
COM1_LOG = "com1.log"
SCREENS = "screens"
EFI_VARS = "efi-vars.fd"
GiB = 1024 ** 3
KEY_PRESS_WINDOW = 60.0      # seconds of QMP key presses when the media have no no-prompt image
KEY_PRESS_EVERY = 2.0


def minimum_disk(release: str, arch: str) -> int:
    """What Setup itself demands (it stops with a dialog below it)."""
    if release == "11":
        return 64 * GiB
    return 16 * GiB if arch == "i686" else 32 * GiB


def choose_tpm(recipe, answer: Artifact | None) -> bool:
    """A swtpm TPM 2.0 device or not. The answer stage's decision wins (the answer file holds the
    bypass keys when it chose the bypass); otherwise windows.tpm: swtpm, or auto = swtpm for
    Windows 11 where swtpm is installed."""
    decided = (answer.data.get("tpm") if answer is not None else None) or recipe.get("windows.tpm", "auto")
    if decided == "swtpm":
        tools.require("swtpm")   # asked for explicitly: missing is an environment error
        return True
    if decided == "auto":
        return recipe.release == "11" and tools.which("swtpm") is not None
    return False


def machine_facts(recipe, answer: Artifact | None) -> winmachine.WindowsMachine:
    firmware = recipe.get("firmware", "bios")
    secure_boot = recipe.get("windows.secure_boot", None)
    if secure_boot is None:
        secure_boot = firmware == "uefi"
    memory = 4096 if recipe.release == "11" else 2048   # Windows 11 Setup refuses less than 4 GiB
    return winmachine.WindowsMachine(arch=recipe.arch, firmware=firmware,
                                     disk_bus=recipe.get("windows.disk_bus", "virtio-blk"),
                                     secure_boot=bool(secure_boot), tpm=choose_tpm(recipe, answer),
                                     memory_mb=memory, cpus=2)


def _blank_disk(path: Path, size: int) -> None:
    run_tool([tools.require("qemu-img"), "create", "-q", "-f", "qcow2", str(path), str(int(size))],
             what=f"qemu-img create {path.name}", timeout=60)


def _key_presser(machine, route: str, shots: Path, log):
    """The fallback when the media have no no-prompt image: press space over QMP during the first
    minute (before the prompt a key press does nothing). Screenshots before the first press and
    after the last confirm the screen moved on (Setup's loader replaced the prompt); a screen that
    did not change is logged and recorded. Returns the on_tick callback and the record."""
    record: dict[str, Any] = {"presses": 0}
    if route != noprompt.ROUTE_SEND_KEY:
        return None, record
    state = {"next": 0.0, "done": False}

    def shot(name: str) -> bytes | None:
        try:
            return machine.screendump(shots / name).read_bytes()
        except Exception as exc:  # noqa: BLE001 - evidence only
            log.warning("install: no screenshot %s: %s", name, exc)
            return None

    def tick(elapsed: float) -> None:
        if state["done"]:
            return
        if elapsed >= KEY_PRESS_WINDOW:
            state["done"] = True
            after = shot("after-key-presses.png")
            before = state.get("before")
            record["screen_changed"] = None if before is None or after is None else before != after
            if record["screen_changed"] is False:
                log.warning("install: the screen did not change while keys were pressed (%d presses); "
                            "if Setup never starts, the stall limit will say so", record["presses"])
            return
        if "before" not in state:
            state["before"] = shot("before-key-presses.png")
        if elapsed >= state["next"]:
            state["next"] = elapsed + KEY_PRESS_EVERY
            try:
                machine.qmp.execute("send-key", {"keys": [{"type": "qcode", "data": "spc"}]})
                record["presses"] += 1
            except Exception as exc:  # noqa: BLE001 - the machine may be resetting
                log.debug("install: send-key failed: %s", exc)
    return tick, record


def _evidence_dir(ctx: StageContext) -> Path:
    base = ctx.options.get("install_evidence_dir") if ctx.options else None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path(base) if base else ctx.store.root / "install-failures" / ctx.recipe.name / stamp


def fail(ctx: StageContext, verdict: install_watch.Verdict, *, image: Path, com1: Path,
         shots: list[Path], last_shot: Path | None) -> InstallerError:
    """Keep the evidence (QEMU already stopped) and make the error that names the pass."""
    dest = _evidence_dir(ctx)
    dest.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    if com1.exists():
        shutil.copy2(com1, dest / com1.name)
        kept.append("COM1 log")
    if last_shot is not None and last_shot.exists():
        shutil.copy2(last_shot, dest / "last-screen.png")
        kept.append("last screenshot")
    logs: list[Path] = []
    try:
        logs = setup_logs.collect(image, "qcow2", dest / "panther", ctx.accel)
    except Exception as exc:  # noqa: BLE001 - the verdict stands without them
        ctx.log.warning("install: could not copy Setup's logs out of the disk: %s", exc)
    kept.append(f"{len(logs)} Setup log(s)" if logs else "no Setup log (Setup wrote none to the disk)")
    errors = [p for p in logs if p.name.lower().endswith("setuperr.log") and p.stat().st_size]
    lines = [f"Windows Setup failed: {verdict.message}"]
    if errors:
        tail = errors[-1].read_text("utf-16" if errors[-1].read_bytes()[:2] == b"\xff\xfe" else "utf-8",
                                    errors="replace").strip().splitlines()[-8:]
        lines += ["last lines of setuperr.log:"] + [f"  {x}" for x in tail]
    if verdict.tail:
        lines += ["last COM1 lines:"] + [f"  {x}" for x in verdict.tail[-8:]]
    err = InstallerError("\n".join(lines), hint=f"evidence ({', '.join(kept)}) kept in {dest}")
    err.cause = verdict.message
    err.last_pass = verdict.last_pass
    err.status = verdict.status
    err.evidence = dest
    return err


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    from builder.runner.machine import QemuMachine, prepare_efi_vars

    r = ctx.recipe
    answer = inputs.get("answer")
    if answer is None or "answer_iso" not in answer.files:
        raise BuildError("the Windows install stage needs the answer stage's answer_iso")
    boot = inputs.get("bootmedia")
    route = boot.data.get("route") if boot is not None else noprompt.ROUTE_BIOS
    installer = boot.path("iso") if boot is not None and "iso" in boot.files else media_iso(inputs["fetch"])
    facts = machine_facts(r, answer)
    if facts.firmware == "uefi" and route == noprompt.ROUTE_BIOS:
        raise BuildError("a UEFI install needs the bootmedia stage (the no-prompt installer copy)")
    size = int(r.get("disk.size", 0) or 0)
    need = minimum_disk(r.release, r.arch)
    if size < need:
        raise BuildError(f"disk.size {size / GiB:.0f} GiB is below what Windows {r.release} Setup requires "
                         f"({need // GiB} GiB)", hint=f'set disk.size = "{need // GiB}G" or more')
    limits = install_watch.WatchLimits(
        timeout=float(ctx.options.get("installer_timeout") or r.get("windows.install.timeout", None) or 7200),
        stall=float(ctx.options.get("installer_stall") or r.get("windows.install.stall", None) or 1800))
    every = float(r.get("windows.install.screenshot_every", None) or 30)

    image, com1, screens = ctx.workdir / IMAGE, ctx.workdir / COM1_LOG, ctx.workdir / SCREENS
    efi_vars = ctx.workdir / EFI_VARS if facts.firmware == "uefi" else None
    tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=ctx.workdir))
    try:
        _blank_disk(image, size)
        if efi_vars is not None:
            prepare_efi_vars(efi_vars, facts.secure_boot)
        spec = winmachine.spec(facts, ctx.accel, system_disk=image.resolve(),
                               cdroms=(installer.resolve(), answer.path("answer_iso").resolve()),
                               serial_log=com1.resolve(), efi_vars=efi_vars.resolve() if efi_vars else None,
                               tpm_state=(tmp / "tpm").resolve() if facts.tpm else None,
                               name="ironforge-windows-install")
        ctx.log.info("install: Windows %s %s, %s%s%s, system disk %s %d GiB, %s; at most %.0f s, stall limit "
                     "%.0f s, boot route %s", r.release, r.arch, facts.firmware,
                     " + Secure Boot" if facts.secure_boot else "", " + swtpm" if facts.tpm else "",
                     facts.disk_bus, size // GiB, ctx.accel.mode.upper(), limits.timeout, limits.stall, route)
        with QemuMachine(spec) as m:
            m.start()
            tick, keys = _key_presser(m, route, screens, ctx.log)
            followed = install_watch.follow(m, com1, screens, limits, screenshot_every=every,
                                            logger=ctx.log, on_tick=tick)
        # QEMU is gone here (the with-block kills a machine still running): the disk is ours again
        verdict = followed.verdict
        if not verdict.ok:
            raise fail(ctx, verdict, image=image, com1=com1, shots=followed.screenshots,
                       last_shot=followed.last_screenshot)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ctx.log.info("install: Windows Setup finished in %.0f s (%s)", verdict.elapsed,
                 ", ".join(f"{p.name} at {p.at:.0f} s" for p in verdict.passes))
    files = {"image": IMAGE, "com1": COM1_LOG, "screens": SCREENS}
    if efi_vars is not None:
        files["efi_vars"] = EFI_VARS
    data: dict[str, Any] = {
        "seconds": round(verdict.elapsed, 1),
        "passes": [{"pass": p.name, "at": round(p.at, 1)} for p in verdict.passes],
        "boot_route": route, "key_presses": keys.get("presses", 0),
        "screen_changed_by_keys": keys.get("screen_changed"),
        "firmware": facts.firmware, "secure_boot": facts.secure_boot, "tpm": "swtpm" if facts.tpm else None,
        "disk_bus": facts.disk_bus, "memory_mb": facts.memory_mb,
        "screenshots": len(followed.screenshots)}
    return Output(files=files, data=data)


STAGE = StageDef(
    name=NAME, version=1,
    reads=("arch", "os", "firmware", "disk", "windows.tpm", "windows.secure_boot", "windows.disk_bus",
           "windows.install"),
    run=run, tools=("qemu-system-x86_64", "qemu-img", "swtpm", "libguestfs"),
    inputs=("fetch", "answer", "bootmedia"), doc=__doc__.splitlines()[0])
