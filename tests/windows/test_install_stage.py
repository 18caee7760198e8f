"""The Windows install and bootmedia stages on STAND-IN media (no Windows media here): machine facts
from the recipe, refusals before anything boots, the no-prompt copy as a stage, and a real QEMU run
of the install stage that stalls (the stand-in installer CD boots nothing) and fails with its
evidence and an error naming where Setup stopped."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from builder.cache.store import Store
from builder.errors import BuildError, InstallerError
from builder.host.accel import choose
from builder.host import tools
from builder.recipe import Recipe
from builder.stage import Artifact, StageContext
from builder.windows import noprompt
from builder.windows.stages import bootmedia, install

GiB = 1024 ** 3
LOG = logging.getLogger("test.windows.install")


def _recipe(release="10", arch="x86_64", firmware="bios", **windows) -> Recipe:
    values = {"os": {"family": "windows", "release": release}, "arch": arch, "firmware": firmware,
              "disk": {"size": 64 * GiB}, "windows": windows}
    return Recipe(name=f"windows-{release}-{arch}", path=None, values=values)


def _ctx(recipe: Recipe, tmp: Path, **options) -> StageContext:
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    return StageContext(recipe=recipe, accel=choose(), store=Store(tmp / "store"), workdir=work, log=LOG,
                        options=options)


def _iso(tmp: Path, name: str, files: dict[str, bytes]) -> Path:
    root = tmp / f"{name}-root"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    out = tmp / f"{name}.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-J", "-o", str(out), str(root)], check=True,
                   capture_output=True)
    return out


def _answer(tmp: Path, **data) -> Artifact:
    iso = _iso(tmp, "answer", {"autounattend.xml": b"<unattend/>"})
    return Artifact("answer", "k-answer", tmp, {"answer_iso": iso.name}, data)


def test_machine_facts_per_version_and_firmware():
    f = install.machine_facts(_recipe("10", "i686", "bios"), None)
    assert (f.arch, f.firmware, f.secure_boot, f.tpm, f.disk_bus, f.memory_mb) == \
        ("i686", "bios", False, False, "virtio-blk", 2048)
    f = install.machine_facts(_recipe("11", "x86_64", "uefi", disk_bus="virtio-scsi"), None)
    assert f.secure_boot and f.memory_mb == 4096 and f.disk_bus == "virtio-scsi"
    assert f.tpm == (tools.which("swtpm") is not None)            # auto: swtpm where installed
    # the answer stage chose the bypass: no TPM device even for Windows 11
    assert install.machine_facts(_recipe("11", "x86_64", "uefi"), Artifact("answer", "k", Path("/"), {},
                                                                              {"tpm": "bypass"})).tpm is False
    assert install.machine_facts(_recipe("server-2022", "x86_64", "uefi", secure_boot=False), None).secure_boot \
        is False


def test_refusals_before_anything_boots(tmp_path):
    small = Recipe("w", None, {"os": {"family": "windows", "release": "11"}, "arch": "x86_64",
                               "firmware": "uefi", "disk": {"size": 32 * GiB}, "windows": {}})
    media = _iso(tmp_path, "media", {"README.TXT": b"stand-in"})
    fetched = Artifact("fetch", "k-fetch", tmp_path, {"windows_iso": media.name}, {})
    boot = Artifact("bootmedia", "k-boot", tmp_path, {}, {"route": noprompt.ROUTE_SEND_KEY})
    with pytest.raises(BuildError, match="below what Windows 11 Setup requires \\(64 GiB\\)"):
        install.run(_ctx(small, tmp_path), {"fetch": fetched, "answer": _answer(tmp_path), "bootmedia": boot})
    with pytest.raises(BuildError, match="answer_iso"):
        install.run(_ctx(small, tmp_path), {"fetch": fetched, "bootmedia": boot})
    assert not (tmp_path / "work" / install.IMAGE).exists()


def test_bootmedia_stage_stand_in_uefi_copy_and_bios_passthrough(tmp_path):
    media = _iso(tmp_path, "m", {"README.TXT": b"x"})
    standin = tmp_path / "standin.iso"
    root = tmp_path / "sroot"
    (root / "efi/microsoft/boot").mkdir(parents=True)
    (root / "efi/microsoft/boot/efisys.bin").write_bytes(b"P" * 4096)
    (root / "efi/microsoft/boot/efisys_noprompt.bin").write_bytes(b"N" * 4096)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-J", "-o", str(standin), "-e",
                    "efi/microsoft/boot/efisys.bin", "-no-emul-boot", str(root)], check=True, capture_output=True)
    fetched = Artifact("fetch", "k", tmp_path, {"windows_iso": standin.name, "virtio_win": media.name}, {})
    out = bootmedia.run(_ctx(_recipe("11", firmware="uefi"), tmp_path), {"fetch": fetched})
    assert out.files == {"iso": bootmedia.ISO} and out.data["route"] == noprompt.ROUTE_PATCHED
    assert (tmp_path / "work" / bootmedia.ISO).exists()
    (tmp_path / "bios").mkdir()
    out = bootmedia.run(_ctx(_recipe("10", firmware="bios"), tmp_path / "bios"), {"fetch": fetched})
    assert out.files == {} and out.data["route"] == noprompt.ROUTE_BIOS
    assert not (tmp_path / "bios" / "work" / bootmedia.ISO).exists()
    with pytest.raises(BuildError, match="which fetched file"):
        bootmedia.media_iso(Artifact("fetch", "k", tmp_path, {"a": "a.iso", "b": "b.iso"}, {}))


@pytest.mark.boot
def test_stand_in_install_run_stalls_and_keeps_evidence(tmp_path):
    """Real QEMU + SeaBIOS + a stand-in installer CD that boots nothing: no marker, a static screen,
    so the stage fails at the stall limit naming the pass (none reached) with its evidence."""
    media = _iso(tmp_path, "media", {"README.TXT": b"stand-in installer media, not bootable"})
    fetched = Artifact("fetch", "k-fetch", tmp_path, {"windows_iso": media.name}, {})
    boot = Artifact("bootmedia", "k-boot", tmp_path, {}, {"route": noprompt.ROUTE_BIOS})
    recipe = _recipe("10", "x86_64", "bios", install={"screenshot_every": 1})
    evidence = tmp_path / "evidence"
    ctx = _ctx(recipe, tmp_path, installer_stall=6, installer_timeout=300, install_evidence_dir=str(evidence))
    with pytest.raises(InstallerError) as ei:
        install.run(ctx, {"fetch": fetched, "answer": _answer(tmp_path), "bootmedia": boot})
    err = ei.value
    assert err.status == "stall" and err.last_pass is None
    assert "before Windows Setup reported its first pass" in err.message
    assert str(evidence) in err.hint and "no Setup log" in err.hint
    assert (evidence / install.COM1_LOG).exists()
    assert (evidence / "last-screen.png").read_bytes()[:4] == b"\x89PNG"


def test_pipeline_loads_these_stages_for_windows_recipes():
    from builder import pipeline
    from builder import recipe as recipes

    r = recipes.load("windows-11-amd64", Path(__file__).resolve().parents[2] / "recipes")
    assert pipeline.load_stage("bootmedia", r) is bootmedia.STAGE
    assert pipeline.load_stage("install", r) is install.STAGE
    assert install.STAGE.inputs == ("fetch", "answer", "bootmedia")
    f = install.machine_facts(r, None)                      # the shipped recipe's facts
    assert (f.firmware, f.secure_boot, f.memory_mb) == ("uefi", True, 4096)
    assert install.minimum_disk(r.release, r.arch) <= r.get("disk.size")


@pytest.mark.boot
def test_key_press_fallback_on_a_real_machine(tmp_path):
    """The QMP route (media without efisys_noprompt.bin): space pressed every 2 s during the window,
    screenshots before and after recorded; other routes press nothing."""
    from builder.runner.machine import MachineSpec, QemuMachine

    assert install._key_presser(None, noprompt.ROUTE_PATCHED, tmp_path, LOG)[0] is None
    spec = MachineSpec(arch="x86_64", accel=choose(), memory_mb=128, nic=None, serial_log=tmp_path / "c.log")
    with QemuMachine(spec) as m:
        m.start()
        tick, record = install._key_presser(m, noprompt.ROUTE_SEND_KEY, tmp_path, LOG)
        for elapsed in (0.0, 1.0, 2.0, 4.5, install.KEY_PRESS_WINDOW, install.KEY_PRESS_WINDOW + 5):
            tick(elapsed)
    assert record["presses"] == 3                       # at 0, 2 and 4.5 s; none after the window
    assert isinstance(record["screen_changed"], bool)
    for name in ("before-key-presses.png", "after-key-presses.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
