"""The verify stage end to end on a disk that boots by itself: firmware -> SYSLINUX -> kernel -> the probe
that libguestfs injected into a throw-away overlay. A tiny guest stands in for Debian (no network)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from builder import recipe as recipemod
from builder.cache.store import Store
from builder.errors import VerifyError
from builder.recipe_view import RecipeView
from builder.host.accel import choose
from builder.runner import tinyguest
from builder.stage import Artifact, StageContext
from builder.stages.verify import STAGE


@pytest.fixture(scope="module")
def bootable(tmp_path_factory) -> tinyguest.TinyGuest:
    return tinyguest.build(tmp_path_factory.mktemp("tiny-boot"), pretend_systemd=True, bootable_disk=True)


def _recipe(arch: str = "amd64", checks=("arch", "virtio-root", "virtio-drivers")):
    r = recipemod.load("debian-12-amd64")
    values = copy.deepcopy(r.values)
    values["arch"] = arch
    values["verify"].update({"checks": list(checks), "timeout": 300, "stall": 90, "memory": 256})
    return dataclasses.replace(r, values=values)


def _ctx(tmp_path: Path, recipe, **options) -> StageContext:
    work = tmp_path / "work"
    work.mkdir()
    # the view the engine gives the stage: a read outside STAGE.reads fails the test
    return StageContext(recipe=RecipeView(recipe, STAGE.name, STAGE.reads), accel=choose(),
                        store=Store(tmp_path / "cache"), workdir=work,
                        log=logging.getLogger("ironforge.stage.verify"), options=options)


def _export(image: Path, **data) -> dict[str, Artifact]:
    art = Artifact(stage="export", key="k", dir=image.parent, files={"image": image.name, "qcow2": image.name},
                   data=data)
    return {"export": art, "previous": art}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_stage_declaration():
    # "disk" (bootstrap builds only): where this build's own root filesystem is, for the host route
    assert STAGE.name == "verify" and STAGE.inputs == ("export", "disk")
    assert set(STAGE.reads) == {"verify", "arch", "firmware", "os.family", "windows.disk_bus"}
    assert {"libguestfs", "qemu-storage-daemon", "debugfs"} <= set(STAGE.tools)


@pytest.mark.boot
def test_stage_passes_and_leaves_the_image_untouched(bootable, tmp_path):
    before = sha256(bootable.bootable_disk)
    ctx = _ctx(tmp_path, _recipe())
    # the export describes a machine whose NIC kept its source MAC (a converted guest): the boot
    # gives the NIC that MAC, so a MAC-matched network configuration is what gets proven
    mac = "00:50:56:9a:3c:51"
    out = STAGE.run(ctx, _export(bootable.bootable_disk, machine={"macs": [mac]}))
    assert out.files == {"serial": "serial.log", "junit": "junit.xml"}
    props = {p.get("name"): p.get("value") for p in ET.parse(ctx.workdir / "junit.xml").getroot().iter("property")}
    assert f"virtio-net-pci,netdev=net0,mac={mac}" in props["qemu_command"]
    assert out.data["status"] == "passed" and out.data["arch"] == "x86_64" and out.data["firmware"] == "bios"
    assert [c["name"] for c in out.data["checks"]] == ["arch", "virtio-root", "virtio-drivers"]
    assert out.data["marker"]["root"] == "/dev/vda2"
    # no disk stage before it (an image this build did not make): the probe went in by libguestfs
    assert out.data["inject_via"] == "libguestfs"
    json.dumps(out.data)  # the engine stores it as JSON
    serial = (ctx.workdir / "serial.log").read_text()
    assert "running the injected probe unit" in serial and "IRONFORGE-READY" in serial
    assert ET.parse(ctx.workdir / "junit.xml").getroot().get("failures") == "0"
    assert sorted(p.name for p in ctx.workdir.iterdir()) == ["junit.xml", "serial.log"]  # no overlay left
    assert sha256(bootable.bootable_disk) == before


@pytest.mark.boot
def test_stage_failure_raises_and_keeps_evidence(bootable, tmp_path):
    """A 64-bit image verified as i686 boots under qemu-system-i386, which cannot run it: VerifyError,
    the serial log, screenshot and JUnit kept outside the (discarded) work directory."""
    evidence = tmp_path / "evidence"
    ctx = _ctx(tmp_path, _recipe(arch="i386"), verify_stall=20, verify_evidence_dir=str(evidence))
    with pytest.raises(VerifyError) as ei:
        STAGE.run(ctx, _export(bootable.bootable_disk))
    f = ei.value.failure
    assert f is not None and f.serial_log.parent == evidence
    assert (evidence / "verify.json").exists() and (evidence / "junit.xml").exists()
    assert f.screenshot is not None and f.screenshot.exists()
    result = json.loads((evidence / "verify.json").read_text())
    assert result["status"] == "failed" and result["arch"] == "i686"
