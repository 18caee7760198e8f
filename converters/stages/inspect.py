"""Stage ``inspect``: one read-only libguestfs launch over the imported disks; the guest's facts
as JSON (``facts.json``, with the texts of the files a fix-up may rewrite, so the dry run and the
convert stage plan from the same bytes; the artifact's data holds the rest, for the manifest).

Linux: distro, version, arch and word size, firmware (a GPT ESP and no BIOS-boot partition means
UEFI), root device, fstab, bootloader, kernels (virtio-capable or Xen-PV-only), foreign guest
tools, consoles, network configuration. Windows: version from the hives, arch from cmd.exe's PE
header, foreign PV services (builder.windows readers). A container root filesystem has no disk:
its facts (distro, release, dpkg's arch, kernels present) are read from the import's clean tar on
the host, and no launch happens.
"""

from __future__ import annotations

import json
import shutil

from builder.errors import BuildError
from builder.host.guestfs_session import Drive, session
from builder.stage import Artifact, Output, StageContext, StageDef
from converters import windows
from converters.linux import facts as linux_facts
from converters.linux import rootfs_facts

NAME = "inspect"
FACTS = "facts.json"


def disks(imp: Artifact) -> list:
    """The import's qcow2 disks in the source's order."""
    names = ["image"] + sorted((k for k in imp.files if k.startswith("disk")), key=lambda k: int(k[4:]))
    return [imp.path(n) for n in names if n in imp.files]


def read(g, workdir, what: str = "inspect") -> dict:
    """Facts from a session whose drives are added (nothing mounted); leaves nothing mounted."""
    roots = g.inspect_os()
    if not roots:
        raise BuildError(f"{what}: no operating system found on the disks",
                         hint="libguestfs inspection found no root filesystem: a data disk, or an "
                              "unclean snapshot of a running guest?")
    if len(roots) > 1:
        raise BuildError(f"{what}: more than one operating system ({', '.join(roots)})",
                         hint="ironforge converts guests holding exactly one operating system")
    root = roots[0]
    os_type = g.inspect_get_type(root)
    if os_type == "windows":
        return windows.collect(g, workdir / "hives")
    if os_type != "linux":
        raise BuildError(f"{what}: the guest is {os_type}; ironforge converts Linux and Windows guests")
    mps = g.inspect_get_mountpoints(root)
    g.mount_ro(root, "/")
    for mp in sorted((m for m in mps if m != "/"), key=lambda m: (m.count("/"), m)):
        try:
            g.mount_ro(mps[mp], mp)
        except Exception:  # noqa: BLE001 - a stale fstab entry: inspect what does mount
            pass
    try:
        return linux_facts.collect(g, root)
    finally:
        g.umount_all()


def public(facts: dict) -> dict:
    return linux_facts.public(facts) if facts.get("type") == "linux" else facts


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    imp = inputs["import"]
    out = ctx.workdir / FACTS
    if imp.data.get("kind") == "rootfs":
        # read on the host from our own clean tar: a container has no disk to launch on
        facts = rootfs_facts.collect(imp.path("rootfs"))
    else:
        with session([Drive(p, "qcow2", readonly=True) for p in disks(imp)], ctx.accel, what=NAME) as g:
            facts = read(g, ctx.workdir)
        shutil.rmtree(ctx.workdir / "hives", ignore_errors=True)
    out.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    ctx.log.info("inspect: %s %s %s (%s, %s)", facts.get("type"), facts.get("distro", facts.get("product_name")),
                 facts.get("version", ""), facts.get("arch", ""), facts.get("firmware", ""))
    return Output(files={FACTS.split(".")[0]: FACTS}, data=public(facts))


STAGE = StageDef(name=NAME, version=1, reads=(), run=run, tools=("libguestfs",), inputs=("import",),
                 doc="read-only inspection of the imported guest: OS, firmware, kernels, tools, consoles, network")
