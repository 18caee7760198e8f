"""The answer CD read back by pycdlib (Joliet, Rock Ridge, ISO 9660) and by xorriso."""

from __future__ import annotations

import io

import pytest

from builder.host import proc
from builder.host.tools import require
from builder.windows import answer_iso, unattend

DRIVERS = [("viostor.inf", b"stand-in viostor.inf\n"), ("viostor.sys", b"stand-in viostor.sys\n"),
           ("WdfCoInstaller01011.dll", b"stand-in coinstaller\n"),
           ("qemupciserial.inf", b"q\n"), ("qemupciserial_x.inf", b"q2\n"), ("netkvm-co.exe", b"n\n")]
XML = b'<?xml version="1.0" encoding="utf-8"?>\r\n<unattend />\r\n'


@pytest.fixture(scope="module")
def cd(tmp_path_factory):
    iso = tmp_path_factory.mktemp("answer") / "answer.iso"
    listing = answer_iso.write(iso, answer_iso.layout(XML, DRIVERS))
    return iso, listing


def _read(iso, **kw) -> bytes:
    import pycdlib
    p = pycdlib.PyCdlib()
    p.open(str(iso))
    try:
        buf = io.BytesIO()
        p.get_file_from_iso_fp(buf, **kw)
        return buf.getvalue()
    finally:
        p.close()


def _expected_paths():
    paths = {"autounattend.xml", "ironforge/complete.cmd"}
    for folder in ("$WinPEDriver$", "virtio"):
        paths |= {f"{folder}/{n}" for n, _ in DRIVERS}
    return paths


def test_listing(cd):
    _iso, listing = cd
    assert set(listing) == _expected_paths()


def test_joliet_and_rock_ridge_names_hold_the_bytes(cd):
    iso, _ = cd
    assert _read(iso, joliet_path="/autounattend.xml") == XML
    assert _read(iso, rr_path="/autounattend.xml") == XML
    for name, data in DRIVERS:
        for folder in ("$WinPEDriver$", "virtio"):
            assert _read(iso, joliet_path=f"/{folder}/{name}") == data
            assert _read(iso, rr_path=f"/{folder}/{name}") == data
    script = _read(iso, joliet_path="/ironforge/complete.cmd")
    assert script == unattend.completion_script() and b"pass=done" in script


def test_iso9660_names_are_legal_level3_and_unique(cd):
    import pycdlib
    iso, _ = cd
    p = pycdlib.PyCdlib()
    p.open(str(iso))
    try:
        names = {}
        for d in ("/", "/WINPEDRIVER", "/VIRTIO", "/IRONFORGE"):
            kids = [c.file_identifier().decode() for c in p.list_children(iso_path=d)
                    if not (c.is_dot() or c.is_dotdot())]
            names[d] = kids
        assert p.has_joliet() and p.has_rock_ridge()
    finally:
        p.close()
    import re
    for d, kids in names.items():
        assert len(set(kids)) == len(kids)
        for k in kids:
            assert re.fullmatch(r"[A-Z0-9_]+(\.[A-Z0-9_]*)?(;1)?", k), k
    assert "AUTOUNATTEND.XML;1" in names["/"]


def test_xorriso_reads_it_back(cd):
    iso, _ = cd
    out = proc.run([require("xorriso"), "-indev", str(iso), "-find", "/", "-type", "f"],
                   what="xorriso -find", timeout=60).stdout
    found = {line.strip().strip("'").lstrip("/") for line in out.splitlines() if line.startswith("'")}
    assert found == _expected_paths()
    extracted = proc.run([require("xorriso"), "-osirrox", "on", "-indev", str(iso), "-extract",
                          "/autounattend.xml", str(iso.parent / "x.xml")], what="xorriso -extract", timeout=60)
    assert extracted.returncode == 0 and (iso.parent / "x.xml").read_bytes() == XML


def test_same_inputs_same_bytes_whatever_the_clock_and_zone(tmp_path, monkeypatch):
    a, b = tmp_path / "a.iso", tmp_path / "b.iso"
    answer_iso.write(a, answer_iso.layout(XML, DRIVERS))
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    import time
    time.tzset()
    try:
        answer_iso.write(b, answer_iso.layout(XML, list(reversed(DRIVERS))))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.iso"
    answer_iso.write(c, answer_iso.layout(XML + b" ", DRIVERS))
    assert c.read_bytes() != a.read_bytes()
    import pycdlib.headervd
    assert pycdlib.headervd.time is time        # the clock is given back


def test_nothing_half_written(tmp_path):
    dst = tmp_path / "bad.iso"
    bad = answer_iso.layout(XML, DRIVERS) + [answer_iso.CdFile("a/b/c.txt", b"x")]
    with pytest.raises(ValueError):
        answer_iso.write(dst, bad)
    assert list(tmp_path.iterdir()) == []
