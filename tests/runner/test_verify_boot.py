"""Real boots under QEMU: the tiny guest passes; a panicking kernel and a blank disk fail fast with evidence."""

from __future__ import annotations

import hashlib
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from builder.errors import VerifyError
from builder.runner.ppm import decode_png_size
from builder.runner.report import render_table, to_json, write_junit
from builder.runner.verify import VerifyTarget, verify_image
from tiny_support import tiny_target


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.boot
def test_tiny_guest_verifies_and_image_is_untouched(tiny, accel, tmp_path):
    before = sha256(tiny.disk)
    r = verify_image(tiny_target(tiny), tmp_path, accel=accel)
    assert r.ok, r.message + "\n" + "\n".join(r.serial_tail)
    assert r.reason == "ready" and r.arch == "x86_64" and r.image_format == "qcow2"
    assert {c.name: c.ok for c in r.checks} == {"arch": True, "virtio-root": True, "virtio-drivers": True}
    assert r.marker["root"] == "/dev/vda" and r.marker["src"] == "fw_cfg"
    assert r.guest_uptime and 0 < r.guest_uptime < r.boot_seconds
    assert "IRONFORGE-READY" in Path(r.serial_log).read_text()
    assert r.screenshot is None
    assert sha256(tiny.disk) == before                          # the image's bytes did not change
    assert not list(tmp_path.glob(".verify-*"))                  # the overlay is gone
    # relaxing nothing: systemd is absent, so asking for it fails the verdict with a named check
    r2 = verify_image(tiny_target(tiny, checks=("systemd",)), tmp_path / "sd", accel=accel)
    assert not r2.ok and r2.reason == "checks" and "systemd" in r2.message
    with pytest.raises(VerifyError, match="systemd: state none"):
        r2.raise_for_status()


@pytest.mark.boot
def test_smbios_fallback_when_fw_cfg_is_missing(tiny, accel, tmp_path):
    """With qemu_fw_cfg unavailable the probe reads the nonce from SMBIOS type 11."""
    r = verify_image(tiny_target(tiny, append=tiny.append + " module_blacklist=qemu_fw_cfg"), tmp_path,
                     accel=accel)
    assert r.ok, r.message
    assert r.marker["src"] == "smbios"


@pytest.mark.boot
def test_kernel_panic_fails_fast_with_screenshot_and_serial_tail(tiny, accel, tmp_path):
    t = tiny_target(tiny, append=tiny.broken_append(), timeout=300, stall=120)
    r = verify_image(t, tmp_path, accel=accel)
    assert not r.ok and r.reason == "panic"
    assert r.boot_seconds < 60                                   # far below the 300 s timeout
    assert "Kernel panic" in r.message
    assert any("Kernel panic" in line for line in r.serial_tail)
    w, h = decode_png_size(Path(r.screenshot).read_bytes())
    assert w > 0 and h > 0
    assert "Kernel panic" in Path(r.serial_log).read_text()
    with pytest.raises(VerifyError) as ei:
        r.raise_for_status()
    assert "last serial lines" in ei.value.message and "Kernel panic" in ei.value.message
    assert ei.value.failure.screenshot == Path(r.screenshot)


@pytest.mark.boot
def test_blank_disk_stalls_fast_with_screenshot(accel, tmp_path):
    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "64M"], check=True)
    t = VerifyTarget(image=blank, name="blank", arch="x86_64", firmware="bios", memory_mb=128, inject=False,
                     timeout=300, stall=8)
    r = verify_image(t, tmp_path / "out", accel=accel)
    assert not r.ok and r.reason == "stall"
    assert r.boot_seconds < 30
    assert "no console output at all" in r.message and "console=ttyS0" in r.hint
    assert decode_png_size(Path(r.screenshot).read_bytes())[0] >= 640
    assert Path(r.serial_log).exists()


@pytest.mark.boot
def test_fleet_parallel_table_junit_json(tiny_fleet):
    """The fleet run (conftest.tiny_fleet, shared with the report tests): good, panics, missing."""
    results, fleet_dir = tiny_fleet["results"], tiny_fleet["dir"]
    assert [r.name for r in results] == ["good", "panics", "missing"]
    assert [r.status for r in results] == ["passed", "failed", "error"]
    assert results[1].reason == "panic" and results[2].reason == "error"
    assert (fleet_dir / "fleet" / "good" / "serial.log").exists()
    assert (fleet_dir / "fleet" / "panics" / "screenshot.png").exists()

    table = render_table(results)
    assert "good" in table and "PASS" in table and "FAILED (panic)" in table and "1/3 passed" in table

    junit = write_junit(results, fleet_dir / "junit.xml")
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "1"
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    assert cases["good"].find("failure") is None
    assert "Kernel panic" in cases["panics"].find("failure").text   # carries the serial tail
    assert cases["missing"].find("error") is not None

    data = json.loads(to_json(results))
    assert data["passed"] == 1 and data["results"][0]["checks"][0]["name"] == "arch"
