"""Stage ``install``: the official Debian installer, preseeded, installs onto a blank virtio disk.

The netboot kernel and initrd come verified from the ``fetch`` stage. A preseed generated from
the recipe goes into the initrd as ``/preseed.cfg`` (a second gzip'd cpio appended to it,
together with an inittab line that streams the installer's syslog to ttyS1), and QEMU boots it
with ``auto=true priority=critical`` on a blank qcow2 of ``disk.size``. The stage ends when the
installer powers the machine off; a dialog waiting for an answer, an installer error, a stall
or the overall timeout fail it with the cause (see builder.linux.installer_watch).

Artifact: ``image`` (the installed disk), the two serial logs; data: the steps seen, timings.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from builder.errors import BuildError, InstallerError, ToolFailed
from builder.host import proc as hostproc
from builder.host import tools
from builder.linux import initrd as initrdmod
from builder.linux import installer_watch, preseed
from builder.stage import Artifact, Output, StageContext, StageDef

NAME = "install"
IMAGE = "image.qcow2"
CONSOLE_LOG = "installer-console.log"
SYSLOG_LOG = "installer-syslog.log"
# What a person types at the installer's boot prompt for an automated install on a serial
# console; the part after '---' is copied to the installed system's kernel command line.
APPEND = "auto=true priority=critical console=ttyS0,115200n8 --- console=ttyS0,115200n8"
# busybox init runs this on the second serial port: the installer's syslog from its first line.
# (Backgrounding tail from preseed/early_command instead hangs the installer.)
SYSLOG_INITTAB = "ttyS1::respawn:/usr/bin/tail -n +1 -f /var/log/syslog"
MEMORY_MB = 1024           # the bookworm installer needs ~800 MiB without lowmem mode


def installer_source(recipe) -> str:
    """Name of the recipe's netboot debian_installer source (the fetch stage's file prefix)."""
    for src in recipe.get("sources", None) or []:
        di = src.get("debian_installer")
        if di and (di.get("image") or "netboot") == "netboot":
            return src["name"]
    raise BuildError("the installer method needs a [[sources]] entry with debian_installer "
                     "(image = \"netboot\")",
                     hint='add: [[sources]] name = "installer", '
                          'debian_installer = { release = "12", image = "netboot" }')


def password_hashes(recipe, env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """(root hash, first user's hash) from the recipe's secret references; None where absent."""
    from builder import secrets  # resolved at build time only; a plan never reads secrets

    def one(ref, key):
        if ref is None:
            return None
        secret = secrets.resolve(ref, recipe.dir, env, key, getattr(recipe, "host_paths", ()),
                                 str(recipe.path or recipe.name))
        return secrets.crypt_form(secret).reveal()

    root = one(recipe.get("customize.root_password", None), "customize.root_password")
    users = recipe.get("customize.users", None) or []
    user = one(users[0].get("password"), "customize.users[0].password") if users else None
    return root, user


def preseed_text(recipe, env: Mapping[str, str] | None = None) -> str:
    root, user = password_hashes(recipe, env)
    return preseed.render(preseed.from_recipe(recipe, root_password_hash=root, user_password_hash=user))


def installer_initrd(src: Path, dst: Path, preseed_cfg: str) -> None:
    """``dst`` = ``src`` + a cpio holding /preseed.cfg and /etc/inittab with the ttyS1 syslog line."""
    inittab = initrdmod.read_file(src, "etc/inittab")
    if inittab is None:
        raise InstallerError(f"{src.name}: no /etc/inittab in the installer initrd; is this a "
                             "debian-installer initrd?")
    text = inittab.decode()
    if SYSLOG_INITTAB not in text:
        text = text.rstrip("\n") + "\n\n# ironforge: the installer's syslog on the second serial port\n" \
            + SYSLOG_INITTAB + "\n"
    initrdmod.append_members(src, dst, [
        initrdmod.Member("preseed.cfg", preseed_cfg.encode(), mode=0o600),
        initrdmod.Member("etc/inittab", text.encode(), mode=0o644),
    ])


def _blank_disk(path: Path, size: int) -> None:
    qemu_img = tools.require("qemu-img")
    try:
        hostproc.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), str(int(size))],
                     what=f"qemu-img create {path.name}", timeout=300)
    except ToolFailed as exc:
        raise BuildError(f"qemu-img create {path.name}: {exc.output}") from None


def _keep_evidence(ctx: StageContext, machine, err: InstallerError, logs: tuple[Path, ...]) -> None:
    """The engine deletes a failed stage's work directory: copy the serial logs and a screenshot to
    ``<cache>/install-failures/<recipe>/<time>/`` (or ``ctx.options["install_evidence_dir"]``)."""
    base = ctx.options.get("install_evidence_dir") if ctx.options else None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = Path(base) if base else ctx.store.root / "install-failures" / ctx.recipe.name / stamp
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for src in logs:
            if src.exists():
                shutil.copy2(src, dest / src.name)
        if machine.running():
            machine.screendump(dest / "screen.png")
    except Exception as exc:  # noqa: BLE001 - evidence is best effort; the installer's verdict stands
        ctx.log.warning("installer: could not save all evidence to %s: %s", dest, exc)
    err.evidence = dest
    hint = f"serial logs{' and screenshot' if (dest / 'screen.png').exists() else ''} kept in {dest}"
    err.hint = f"{err.hint}; {hint}" if err.hint else hint


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    from builder.runner.machine import Disk, MachineSpec, QemuMachine

    r = ctx.recipe
    fetched = inputs.get("fetch")
    if fetched is None:
        raise BuildError("the install stage needs the fetch stage's installer files as input")
    name = installer_source(r)
    kernel, initrd = fetched.path(f"{name}.kernel"), fetched.path(f"{name}.initrd")
    timeout = float(ctx.options.get("installer_timeout") or r.get("installer.timeout", None) or 5400)
    stall = float(ctx.options.get("installer_stall") or r.get("installer.stall", None) or 900)
    size = int(r.get("disk.size", 4 * 1024 ** 3))

    image = ctx.workdir / IMAGE
    console_log, syslog_log = ctx.workdir / CONSOLE_LOG, ctx.workdir / SYSLOG_LOG
    tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=ctx.workdir))
    try:
        # the preseed holds password hashes: it lives only in this temporary directory
        t0 = time.monotonic()
        boot_initrd = tmp / "initrd.gz"
        installer_initrd(initrd, boot_initrd, preseed_text(r))
        _blank_disk(image, size)
        ctx.log.info("installer: preseed injected into %s (%.1f s); booting on a blank %d GiB disk "
                     "(%s; ends when the installer powers off, at most %d s, stall limit %d s)",
                     initrd.name, time.monotonic() - t0, size // 1024 ** 3, ctx.accel.mode.upper(),
                     timeout, stall)
        spec = MachineSpec(arch=r.arch, accel=ctx.accel, memory_mb=MEMORY_MB, cpus=1,
                           firmware="bios", disks=(Disk(image.resolve(), "qcow2"),), nic="virtio",
                           kernel=kernel.resolve(), initrd=boot_initrd.resolve(), append=APPEND,
                           serial_log=console_log.resolve(), extra_serial_logs=(syslog_log.resolve(),),
                           no_reboot=True, name="ironforge-install")
        with QemuMachine(spec) as machine:
            machine.start()
            try:
                outcome = installer_watch.follow(machine, console_log, syslog_log, timeout=timeout,
                                                 stall=stall, logger=ctx.log)
            except InstallerError as err:
                _keep_evidence(ctx, machine, err, (console_log, syslog_log))
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ctx.log.info("installer: finished in %.0f s (%d steps)", outcome.seconds, len(outcome.steps))
    data: dict[str, Any] = {"steps": outcome.steps, "seconds": round(outcome.seconds, 1),
                            "append": APPEND, "installer": {k: fetched.data.get(f"{name}.{k}")
                                                            for k in ("kernel", "initrd")}}
    return Output(files={"image": IMAGE, "console_log": CONSOLE_LOG, "syslog": SYSLOG_LOG}, data=data)


STAGE = StageDef(
    name=NAME, version=1,
    # sources: installer_source() looks up the netboot entry's name
    reads=("arch", "os", "build", "installer", "customize.root_password", "customize.users",
           "customize.timezone", "customize.hostname", "disk", "sources"),
    run=run, tools=("qemu-system-x86_64", "qemu-img"), inputs=("fetch",),
    doc=__doc__.splitlines()[0])
