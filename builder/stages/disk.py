"""Stage ``disk``: the bootstrap tarball becomes a bootable qcow2.

On the host (native speed, nothing mounted): extract the tarball, write fstab by UUID, a
default hostname, an empty machine-id, no SSH host keys (plus a first-boot unit making new
ones), no apt lists, GRUB's serial-console defaults; partition a sparse raw file with sfdisk,
write ext4 (and the ESP) into it at the partitions' offsets, convert to qcow2. Then ONE
libguestfs launch for what needs the guest's own code: grub-install, update-grub, fstrim.

The virtio drivers are already in the initramfs: the bootstrap stage listed them before the
kernel's postinst built it (natively), so nothing here rebuilds it inside the slow appliance;
the drivers stage checks the initramfs listing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

from builder.errors import BuildError
from builder.host.guestfs_session import Drive, session
from builder.linux import bootloader, bootunits, debconf, diskimage, imagereport, rootfs
from builder.stage import Artifact, Output, StageContext, StageDef

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


def _guest_steps(g, lay: diskimage.Layout, ids: diskimage.Ids, firmware: str, ctx: StageContext,
                 timings: dict[str, float]) -> dict[str, Any]:
    t0 = time.monotonic()
    g.mount(lay.root.device, "/")
    esp = lay.get("esp")
    if esp is not None:
        g.mkdir_p("/boot/efi")
        g.mount(esp.device, "/boot/efi")
    cfg = bootloader.install(g, firmware, str(ids.root), logger=ctx.log)
    timings["grub_s"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    # read back what the drivers stage checks, in this launch rather than one of its own
    report = imagereport.take(g)
    timings["image_report_s"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    # fstrim each mounted filesystem so the blocks freed by the steps above don't bloat the image
    for mp in (["/boot/efi"] if esp is not None else []) + ["/"]:
        g.fstrim(mp)
    g.umount_all()
    timings["trim_s"] = round(time.monotonic() - t0, 2)
    return {"kernels": report["kernels"], "image_report": report, "grub_cfg_linux_lines": [
        ln.strip() for ln in cfg.splitlines() if ln.strip().startswith("linux")]}


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
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
        facts = rootfs.prepare(tree, fstab_entries(lay, ids, fs), bootloader.GRUB_DEFAULTS)
        facts["boot_units_disabled"] = bootunits.minimal_server(tree)
        if firmware == "bios":
            # so an upgrade of grub-pc inside the guest reinstalls GRUB without asking
            facts["debconf"] = debconf.preseed(tree, debconf.grub_pc_answers())
        kernels_host = rootfs.kernel_versions(tree)
        if not kernels_host:
            raise BuildError("the bootstrap tarball has no kernel with an initrd in /boot",
                             hint="the bootstrap stage installs linux-image-*; check its log")
        timings["prepare_tree_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        ctx.log.info("partitioning (%s, %s) and writing filesystems", table, firmware)
        diskimage.build_raw(raw, lay, ids, tree, epoch=epoch)
        shutil.rmtree(tree)
        image = ctx.workdir / IMAGE
        diskimage.to_qcow2(raw, image)
        timings["make_disk_s"] = round(time.monotonic() - t0, 2)
    finally:
        shutil.rmtree(ctx.workdir / tmp, ignore_errors=True)

    t0 = time.monotonic()
    # two vCPUs: update-grub under TCG uses both host cores (multi-threaded TCG)
    with session([Drive(image, "qcow2", readonly=False)], ctx.accel, what="disk: install GRUB",
                 smp=min(2, os.cpu_count() or 1)) as g:
        timings["launch_s"] = round(time.monotonic() - t0, 2)
        guest = _guest_steps(g, lay, ids, firmware, ctx, timings)
    timings["appliance_s"] = round(time.monotonic() - t0, 2)

    return Output(files={"image": IMAGE}, data={
        "root_uuid": str(ids.root),
        "esp_uuid": ids.esp_uuid if lay.get("esp") else None,
        "partition_table": table, "firmware": firmware, "disk_size": lay.size,
        "partitions": [{"name": p.name, "number": p.number, "start": p.start, "size": p.size}
                       for p in lay.partitions],
        "root_device_in_appliance": lay.root.device,
        "kernels": guest["kernels"], "kernel": guest["kernels"][-1] if guest["kernels"] else None,
        "grub_linux": guest["grub_cfg_linux_lines"], "image_report": guest["image_report"],
        "timings": timings, **facts})


def pins(ctx: StageContext) -> dict[str, Any]:
    # The filesystem UUIDs derive from the recipe's name, which is not a recipe value: key on it.
    return {"uuid_seed": ctx.recipe.name}


STAGE = StageDef(
    name=NAME, version=4,
    # no customize.*: a changed hostname re-runs customize and after, not this
    reads=("firmware", "disk.size", "disk.partition_table", "disk.filesystem"),
    run=run, tools=("mke2fs", "sfdisk", "mkfs.fat", "qemu-img", "libguestfs"), pins=pins,
    inputs=("bootstrap",),
    doc="partition, make filesystems from the bootstrap tree, install GRUB")
