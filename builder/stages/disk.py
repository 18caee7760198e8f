"""Stage ``disk``: the bootstrap tarball becomes a bootable qcow2, entirely on the host.

At native speed, nothing mounted, no appliance: extract the tarball, write fstab by UUID, a
default hostname, an empty machine-id, no SSH host keys (plus a first-boot unit making new
ones), no apt lists, GRUB's serial-console defaults; put GRUB into the tree (the guest's own
grub-mkimage in a chroot, its modules, a grub.cfg: ``builder.linux.grub_host``); read the image
report from the tree; partition a sparse raw file with sfdisk, write ext4 (and the ESP) into it
at the partitions' offsets; write GRUB's boot blocks (BIOS) or its loader into the ESP (UEFI);
convert to qcow2. The libguestfs launch this stage used to need for grub-install and
update-grub (about 45 s of a 145 s build under TCG) is gone; the verify stage's boot is what
proves the result.

The virtio drivers are already in the initramfs: the bootstrap stage listed them before the
kernel's postinst built it (natively), so nothing here rebuilds it inside the slow appliance;
the drivers stage checks the initramfs listing.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from typing import Any

from builder.errors import BuildError
from builder.linux import bootloader, bootunits, debconf, diskimage, grub_host, imagereport, rootfs
from builder.linux import customize as linux_customize
from builder.linux.tree_edit import TreeEdit
from builder.linux.tree_view import TreeView
from builder.stage import Artifact, Output, StageContext, StageDef, recipe_env

NAME = "disk"
IMAGE = "image.qcow2"


def fstab_entries(lay: diskimage.Layout, ids: diskimage.Ids, fs: str = "ext4") -> list[rootfs.FstabEntry]:
    entries = [rootfs.FstabEntry(f"UUID={ids.root}", "/", fs, "errors=remount-ro", 1)]
    if lay.get("esp") is not None:
        entries.append(rootfs.FstabEntry(f"UUID={ids.esp_uuid}", "/boot/efi", "vfat", "umask=0077", 2))
    return entries


def _rootfs_input(inputs: dict[str, Artifact]) -> Artifact:
    art = inputs.get("bootstrap") or inputs.get("previous")
    if art is None or "rootfs" not in art.files:
        raise BuildError("the disk stage needs the bootstrap stage's rootfs.tar as input")
    return art


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    return _make(ctx, inputs, customize=False)


def run_customized(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    """The disk stage of a recipe whose ``customize.*`` only edits files: applied to the tree
    before the filesystem is made (``builder.linux.customize.on_host``)."""
    return _make(ctx, inputs, customize=True)


def _make(ctx: StageContext, inputs: dict[str, Artifact], customize: bool) -> Output:
    r = ctx.recipe
    art = _rootfs_input(inputs)
    firmware = r.get("firmware", "bios")
    table = r.get("disk.partition_table", "mbr")
    fs = r.get("disk.filesystem", "ext4")
    if fs != "ext4":
        raise BuildError(f"disk.filesystem {fs!r} is not supported by the bootstrap build",
                         hint='use disk.filesystem = "ext4"')
    size = int(r.get("disk.size", 4 * 1024 ** 3))
    lay = diskimage.layout(size, table, firmware)
    ids = diskimage.ids_for(r.name)
    epoch = art.data.get("source_date_epoch")
    timings: dict[str, float] = {}

    tmp = tempfile.mkdtemp(prefix=".disk-", dir=ctx.workdir)
    try:
        tree = ctx.workdir / tmp / "root"
        raw = ctx.workdir / tmp / "disk.raw"
        t0 = time.monotonic()
        ctx.log.info("extracting %s", art.path("rootfs").name)
        diskimage.extract(art.path("rootfs"), tree)
        entries = fstab_entries(lay, ids, fs)
        facts = rootfs.prepare(tree, entries, bootloader.GRUB_DEFAULTS)
        for e in entries:
            # the mount points fstab names (/boot/efi) exist in the filesystem as made
            (tree / e.mountpoint.lstrip("/")).mkdir(mode=0o755, parents=True, exist_ok=True)
        facts["boot_units_disabled"] = bootunits.minimal_server(tree)
        if customize:
            t1 = time.monotonic()
            spec = linux_customize.CustomizeSpec.from_recipe(r, recipe_env(ctx))
            ctx.log.debug("customize spec: %r", spec)   # secrets print as Secret(<hidden>, …)
            ctx.log.info("customize: on the root tree (file edits only: no appliance)")
            facts["customize"] = linux_customize.apply(TreeEdit(tree), spec)
            timings["customize_s"] = round(time.monotonic() - t1, 2)
        if firmware == "bios":
            # so an upgrade of grub-pc inside the guest reinstalls GRUB without asking
            facts["debconf"] = debconf.preseed(tree, debconf.grub_pc_answers())
        kernels_host = rootfs.kernel_versions(tree)
        if not kernels_host:
            raise BuildError("the bootstrap tarball has no kernel with an initrd in /boot",
                             hint="the bootstrap stage installs linux-image-*; check its log")
        timings["prepare_tree_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        ctx.log.info("GRUB (%s) from the image's own grub-mkimage", grub_host.platform_for(firmware))
        grub = grub_host.prepare_tree(tree, firmware, lay, str(ids.root), kernels_host)
        problems = bootloader.check_grub_cfg(grub.grub_cfg, str(ids.root))
        if problems:
            raise BuildError("the grub.cfg written would not boot this image:\n  " + "\n  ".join(problems))
        timings["grub_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        # what the drivers stage checks, read from the tree the filesystem is made of
        report = imagereport.take(TreeView(tree))
        timings["image_report_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        ctx.log.info("partitioning (%s, %s) and writing filesystems", table, firmware)
        diskimage.build_raw(raw, lay, ids, tree, epoch=epoch)
        shutil.rmtree(tree)
        boot = grub_host.finish(raw, grub, lay, ctx.workdir / tmp, epoch=epoch)
        image = ctx.workdir / IMAGE
        diskimage.to_qcow2(raw, image)
        timings["make_disk_s"] = round(time.monotonic() - t0, 2)
    finally:
        shutil.rmtree(ctx.workdir / tmp, ignore_errors=True)

    return Output(files={"image": IMAGE}, data={
        "root_uuid": str(ids.root),
        "esp_uuid": ids.esp_uuid if lay.get("esp") else None,
        "partition_table": table, "firmware": firmware, "disk_size": lay.size,
        "partitions": [{"name": p.name, "number": p.number, "start": p.start, "size": p.size}
                       for p in lay.partitions],
        "kernels": report["kernels"], "kernel": report["kernels"][-1] if report["kernels"] else None,
        "grub": boot,
        "grub_linux": [ln.strip() for ln in grub.grub_cfg.splitlines() if ln.strip().startswith("linux")],
        "image_report": report, "timings": timings, **facts})


def pins(ctx: StageContext) -> dict[str, Any]:
    # The filesystem UUIDs derive from the recipe's name, which is not a recipe value: key on it.
    return {"uuid_seed": ctx.recipe.name}


STAGE = StageDef(
    name=NAME, version=5,
    # no customize.*: a changed hostname re-runs customize and after, not this
    reads=("firmware", "disk.size", "disk.partition_table", "disk.filesystem"),
    run=run, tools=("mke2fs", "sfdisk", "mkfs.fat", "mcopy", "qemu-img"), pins=pins,
    inputs=("bootstrap",),
    doc="partition, make filesystems from the bootstrap tree, install GRUB, all on the host")

# A recipe whose customizations only edit files (no packages, no commands) has no customize
# stage: this disk stage applies them to the tree first, which saves the customize stage's
# libguestfs launch (about 22 s of a verified build under TCG). It reads customize.* for that,
# so a changed hostname re-runs it (about 12 s) and the stages after it; bootstrap stays cached.
CUSTOMIZING = dataclasses.replace(
    STAGE, run=run_customized, reads=STAGE.reads + ("customize",),
    doc="the disk stage, with the recipe's file-only customizations applied to the tree first")
