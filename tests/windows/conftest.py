"""Fixtures for the Windows tests, each built once per session: the STAND-IN virtio-win tree,
the PHONY Windows disks (one libguestfs launch, cached by the generator's digest), and the six
phony guests injected once each (by the CLI, the library and the drivers stage) then read back
in one more launch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from builder.host import accel as accelmod
from builder.host.guestfs_session import Drive, session
from shared_cache import cache_root
from windows import phony, standin_virtio_win
from windows.cli_support import cli



def windows_cache() -> Path:
    p = cache_root() / "windows"
    p.mkdir(parents=True, exist_ok=True)
    return p


@pytest.fixture(scope="session")
def accel():
    return accelmod.choose(None)


@pytest.fixture(scope="session")
def standin_vw():
    """(directory, iso) of the STAND-IN virtio-win tree (placeholder bytes, real names)."""
    return standin_virtio_win.standin(windows_cache())


@pytest.fixture(scope="session")
def phony_disks(accel):
    """name -> cached PHONY Windows disk (read-only: copy before writing)."""
    return phony.phony_set(windows_cache(), accel=accel)


@pytest.fixture(scope="session")
def injected(tmp_path_factory, phony_disks, standin_vw, accel):
    """Every standard phony guest injected once. name -> {"disk", "report", "route", "records"}."""
    from builder.stage import Artifact, StageContext
    from builder.windows import inject
    from builder.windows.stages import drivers as drivers_stage
    import logging
    tree, iso = standin_vw
    base = tmp_path_factory.mktemp("injected")
    out = {}

    # win7 x86: the CLI, --in-place, the ISO
    disk = phony.copy_disk(phony_disks["win7-x86"], base / "win7-x86.qcow2")
    d = json.loads(cli("inject-drivers", disk, "--virtio-win", iso, "--in-place", "--json").stdout)
    out["win7-x86"] = {"disk": disk, "report": d, "route": "cli --in-place, iso",
                       "records": d["records"]}
    # win10 x86: the CLI, default output (a new qcow2 beside the input), the directory
    src = phony.copy_disk(phony_disks["win10-x86"], base / "win10-x86-in.qcow2")
    d = json.loads(cli("inject-drivers", src, "--virtio-win", tree, "--json").stdout)
    out["win10-x86"] = {"disk": Path(d["output"]), "report": d, "route": "cli copy, directory",
                        "records": d["records"], "input": src}
    # win10 amd64, Server 2019, Server 2022: the library
    for name, source in (("win10-amd64", iso), ("win2k19-amd64", tree), ("win2k22-amd64", iso)):
        disk = phony.copy_disk(phony_disks[name], base / f"{name}.qcow2")
        r = inject.inject_image(disk, "qcow2", source, accel, base / f"{name}-work")
        recs = inject.write_record(r, base / f"{name}-records")
        out[name] = {"disk": disk, "report": r.to_dict(), "route": "library",
                     "records": {k: str(v) for k, v in recs.items()}}
    # win11 amd64: the drivers stage over the phony disk as the previous stage's image
    prev_dir = base / "install"
    prev_dir.mkdir()
    shutil.copyfile(phony_disks["win11-amd64"], prev_dir / "image.qcow2")
    work = base / "drivers-stage"
    work.mkdir()
    ctx = StageContext(recipe=None, accel=accel, store=None, workdir=work,
                       log=logging.getLogger("test.drivers"))
    prev = Artifact("install", "0" * 64, prev_dir, {"image": "image.qcow2"}, {})
    fetch = Artifact("fetch", "1" * 64, base, {}, {"virtio_win": {"kind": "directory", "path": str(tree)}})
    o = drivers_stage.run(ctx, {"fetch": fetch, "install": prev, "previous": prev})
    out["win11-amd64"] = {"disk": work / o.files["image"], "report": o.data["inject"], "route": "stage",
                          "records": {"reg": str(work / o.files["reg"]), "report": str(work / o.files["report"])},
                          "backing": prev_dir / "image.qcow2"}
    return out


@pytest.fixture(scope="session")
def readback(injected, accel, tmp_path_factory):
    """What the injected disks hold, read in ONE read-only launch: name -> {files, drivers,
    script, hives (local paths)}."""
    base = tmp_path_factory.mktemp("readback")
    names = sorted(injected)
    out = {}
    with session([Drive(injected[n]["disk"], "qcow2") for n in names], accel, what="readback") as g:
        devs = g.list_devices()
        for n, dev in zip(names, devs):
            part = injected[n]["report"]["guest"]["device"][len("/dev/sda"):]
            g.mount_ro(dev + part, "/")
            vdir = "/Windows/Drivers/VirtIO"
            files = {f: bytes(g.read_file(f"{vdir}/{f}")) for f in g.ls(vdir)}
            drivers = {f: bytes(g.read_file(f"/Windows/System32/drivers/{f}"))
                       for f in g.ls("/Windows/System32/drivers")}
            script = (bytes(g.read_file("/Windows/Setup/ironforge/firstboot.cmd"))
                      if g.exists("/Windows/Setup/ironforge/firstboot.cmd") else None)
            hives = {}
            for h in ("SYSTEM", "SOFTWARE"):
                hives[h] = base / f"{n}-{h}"
                g.download(f"/Windows/System32/config/{h}", str(hives[h]))
            leftovers = [f for f in g.ls("/Windows/System32/config") if f not in ("SYSTEM", "SOFTWARE")]
            out[n] = {"files": files, "drivers": drivers, "script": script, "hives": hives,
                      "config_leftovers": leftovers}
            g.umount_all()
    return out
