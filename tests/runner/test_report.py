"""JUnit XML from a real fleet run (conftest.tiny_fleet), parsed back: provenance properties and the
serial tail in system-out."""

from __future__ import annotations

import hashlib
import shlex
import xml.etree.ElementTree as ET

import pytest

from builder.runner.report import junit_xml, write_junit
from builder.runner.verify import VerifyResult

pytestmark = pytest.mark.boot


def _props(tc) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in tc.find("properties")}


def test_junit_properties_and_serial_tail(tiny_fleet, tiny):
    results = tiny_fleet["results"]
    suite = ET.parse(write_junit(results, tiny_fleet["dir"] / "props.xml")).getroot()
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    good, panics = _props(cases["good"]), _props(cases["panics"])

    # the digest and keys the manifest beside the image names; a bare image is hashed
    assert good["image_sha256"] == tiny_fleet["sha256"]
    assert {k: v for k, v in good.items() if k.startswith("cache_key.")} == {
        f"cache_key.{k}": v for k, v in tiny_fleet["keys"].items()}
    assert panics["image_sha256"] == hashlib.sha256(tiny.disk.read_bytes()).hexdigest()
    assert good["accel"] == panics["accel"] == results[0].accel
    # the exact command that ran: the QEMU binary, our kernel, the boot's own nonce
    cmd = shlex.split(good["qemu_command"])
    assert cmd == results[0].qemu_command and cmd[0].endswith("qemu-system-x86_64")
    assert cmd[cmd.index("-kernel") + 1] == str(tiny.kernel)
    assert any(f"string={results[0].marker['nonce']}" in a for a in cmd)
    assert float(good["timeline.kernel"]) > 0 and float(good["timeline.marker"]) > 0

    # the serial tail is in system-out for every booted case, the panic's lines included
    assert "IRONFORGE-READY" in cases["good"].find("system-out").text
    assert "Kernel panic" in cases["panics"].find("system-out").text
    assert cases["missing"].find("system-out") is None          # never booted: nothing to show


def test_guest_bytes_xml_cannot_carry_are_replaced():
    r = VerifyResult(image="x", name="x", arch="x86_64", accel="tcg", firmware="bios", status="failed",
                     reason="stall", message="bad \x07 byte", serial_tail=["esc \x1b[31m red \x00 nul", "ok"])
    suite = ET.fromstring(junit_xml([r]).encode())
    out = suite.find("testcase/system-out").text
    assert "\ufffd" in out and "\x00" not in out and out.endswith("ok")
    assert suite.find("testcase/failure").get("message") == "bad \ufffd byte"
