"""``ironforge inject-drivers`` on PHONY guests with the STAND-IN virtio-win: refusals leave the
disk byte-identical (sha256), a second injection changes nothing, a dry run writes nothing."""

import hashlib
import json

import pytest

from windows.cli_support import cli
from windows import phony
from windows import standin_virtio_win as S


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("variant,rc,message", [
    ("bad-hibernated", 1, "hibernated"),
    ("bad-dynamic", 1, "dynamic disk partition (MBR type 0x42"),
    ("bad-dynamic-gpt", 1, "dynamic disk partition (GPT LDM data"),
    ("bad-truncated-hive", 1, "the SYSTEM hive is"),
    ("bad-linux", 1, "no Windows installation on this disk"),
])
def test_stand_in_refusals_leave_the_disk_byte_identical(phony_disks, standin_vw, tmp_path, variant, rc, message):
    disk = phony.copy_disk(phony_disks[variant], tmp_path / f"{variant}.qcow2")
    before = sha(disk)
    p = cli("inject-drivers", disk, "--virtio-win", standin_vw[1], "--in-place", check_rc=rc)
    assert message in p.stderr and "hint:" in p.stderr and "nothing was written" in p.stderr
    assert "Traceback" not in p.stderr
    assert sha(disk) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == [disk.name]     # no records, no temp dirs


def test_stand_in_missing_drivers_names_version_arch_and_offer(phony_disks, tmp_path):
    tree = S.make_tree(tmp_path / "vw", [p for p in S.path_list() if "/2k22/" not in p])
    disk = phony.copy_disk(phony_disks["win2k22-amd64"], tmp_path / "w.qcow2")
    before = sha(disk)
    p = cli("inject-drivers", disk, "--virtio-win", tree, "--in-place", check_rc=2)
    assert "no driver for Windows Server 2022 (win2k22, folder '2k22') on amd64" in p.stderr
    assert "2k19/amd64" in p.stderr and "w11/arm64" in p.stderr
    assert sha(disk) == before


def test_unreadable_virtio_win_fails_before_any_launch(phony_disks, tmp_path):
    bad = tmp_path / "virtio-win.iso"
    bad.write_bytes(b"<html>" * 1000)
    p = cli("inject-drivers", phony_disks["win10-amd64"], "--virtio-win", bad, "--dry-run", check_rc=2)
    assert "not a readable ISO 9660 image" in p.stderr


def test_usage_errors(phony_disks, tmp_path):
    p = cli("inject-drivers", phony_disks["win10-amd64"], "--virtio-win", tmp_path, "--in-place",
            "--output", tmp_path / "x.qcow2", check_rc=2)
    assert "exclude each other" in p.stderr
    p = cli("inject-drivers", tmp_path / "missing.qcow2", "--virtio-win", tmp_path, check_rc=1)
    assert "no such file" in p.stderr


def test_stand_in_second_injection_changes_nothing(injected, standin_vw):
    """win7-x86 was injected --in-place by the CLI (conftest); again: same bytes, same report."""
    disk = injected["win7-x86"]["disk"]
    before = sha(disk)
    d = json.loads(cli("inject-drivers", disk, "--virtio-win", standin_vw[1], "--in-place", "--json").stdout)
    assert not d["changed"] and not d["written"] and d["registry"] == []
    assert all(f["action"] == "same" for f in d["files"]) and len(d["files"]) == 28 + 2 + 1   # drivers, boot .sys x2, script
    assert sha(disk) == before


def test_stand_in_copy_mode_leaves_the_input_alone(injected, phony_disks):
    w = injected["win10-x86"]
    assert sha(w["input"]) == sha(phony_disks["win10-x86"])
    assert w["disk"].name == "win10-x86-in-virtio.qcow2" and w["disk"].exists()
    rec = json.loads(open(w["records"]["report"]).read())
    assert rec["guest"]["version_osinfo"] == "win10" and rec["written"]


def test_stand_in_dry_run_on_a_sysprepped_guest(phony_disks, standin_vw, tmp_path):
    """Dry run: the plan, nothing written. Sysprepped (Setup queued): no first-boot command."""
    disk = phony.copy_disk(phony_disks["sysprepped"], tmp_path / "s.qcow2")
    before = sha(disk)
    d = json.loads(cli("inject-drivers", disk, "--virtio-win", standin_vw[0], "--dry-run", "--json").stdout)
    assert d["dry_run"] and d["changed"] and not d["written"]
    assert not d["firstboot"]["installed"] and "windeploy" in d["firstboot"]["reason"]
    assert any("first-boot" in w for w in d["warnings"])
    keys = {c["key"] for c in d["registry"]}
    assert "Setup" not in keys and "ControlSet001\\Services\\viostor" in keys
    assert not any(f["path"].endswith("firstboot.cmd") for f in d["files"])
    assert sha(disk) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.qcow2"]
