"""Media inspection against STAND-IN installer media (no Microsoft media exist here): real WIMs
made by wimcapture, in UDF ISOs made by pycdlib; plus hostile WIMs crafted from them."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from builder.windows import media
from builder.windows.media import MediaError, inspect_iso, inspect_wim_file
from windows import standin_media as sm


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("standin-media")
    wim = sm.make_wim(tmp / "install.wim", sm.WIN10 + [("Windows 10 Pro N", "ProfessionalN", "x86", 19045, "Client")], tmp)
    return tmp, wim, sm.make_iso(tmp / "win.iso", wim)


def _labels(facts):
    return [(e.index, e.name, e.edition_id, e.arch, e.build, e.installation_type) for e in facts.editions]


EXPECTED = [(1, "Windows 10 Home", "Core", "x86_64", 19045, "Client"),
            (2, "Windows 10 Pro", "Professional", "x86_64", 19045, "Client"),
            (3, "Windows 10 Pro N", "ProfessionalN", "i686", 19045, "Client")]


def test_standin_iso_read_through_pycdlib_udf(standin):
    _tmp, _wim, iso = standin
    facts = inspect_iso(iso)
    assert facts.read_by == "pycdlib" and facts.wim == "sources/install.wim"
    assert _labels(facts) == EXPECTED
    assert facts.editions[0].languages == ("en-US",) and facts.editions[0].default_language == "en-US"
    assert facts.editions[0].major == 10 and facts.editions[0].minor == 0


def test_standin_iso_read_through_wiminfo_matches(standin):
    _tmp, _wim, iso = standin
    facts = inspect_iso(iso, reader="wiminfo")
    assert facts.read_by == "wiminfo"
    assert _labels(facts) == EXPECTED


def test_wim_file_both_readers(standin):
    _tmp, wim, _iso = standin
    assert _labels(inspect_wim_file(wim)) == EXPECTED
    assert _labels(inspect_wim_file(wim, reader="wiminfo")) == EXPECTED


def test_esd_name_and_case_insensitive_lookup(standin, tmp_path):
    _tmp, wim, _iso = standin
    iso = sm.make_iso(tmp_path / "esd.iso", wim, wim_name="Install.ESD")
    facts = inspect_iso(iso)
    assert facts.wim == "sources/Install.ESD" and len(facts.editions) == 3


def test_select_by_name_index_and_refusal_lists_editions(standin):
    facts = inspect_iso(standin[2])
    assert facts.select("windows 10 home").index == 1
    assert facts.select(3).arch == "i686"
    with pytest.raises(MediaError) as exc:
        facts.select("Windows 10 Education")
    assert "Windows 10 Education" in exc.value.message
    assert "1: 'Windows 10 Home'" in exc.value.hint and "2: 'Windows 10 Pro'" in exc.value.hint
    with pytest.raises(MediaError, match="names none"):
        facts.select(None)
    with pytest.raises(MediaError):
        facts.select(9)


def _with_xml(wim: bytes, xml: bytes, flags: int = 0x02, size: int | None = None) -> bytes:
    """The WIM with its XML resource replaced by ``xml`` appended at the end."""
    off = len(wim)
    n = len(xml) if size is None else size
    hdr = bytearray(wim[:208])
    hdr[0x48:0x48 + 24] = n.to_bytes(7, "little") + bytes([flags]) + struct.pack("<QQ", off, n)
    return bytes(hdr) + wim[208:] + xml


def _xml(text: str) -> bytes:
    return b"\xff\xfe" + text.encode("utf-16-le")


def test_hostile_truncated_wim(standin, tmp_path):
    _tmp, wim, _iso = standin
    data = wim.read_bytes()
    cut = tmp_path / "cut.wim"
    cut.write_bytes(data[:len(data) - 100])     # the XML resource is at the end
    with pytest.raises(MediaError, match="outside the file"):
        inspect_wim_file(cut)
    short = tmp_path / "short.wim"
    short.write_bytes(data[:100])
    with pytest.raises(MediaError, match="not a WIM"):
        inspect_wim_file(short)
    iso = sm.make_iso(tmp_path / "cut.iso", cut)
    with pytest.raises(MediaError, match="outside the file"):
        inspect_iso(iso)


def test_truncated_iso_any_length(standin, tmp_path):
    """An ISO cut anywhere is refused with a MediaError, never a parser's own exception."""
    data = standin[2].read_bytes()
    p = tmp_path / "cut.iso"
    for n in (0, 100, 16 * 2048, 20 * 2048, 40 * 2048, len(data) // 2, len(data) - 2048):
        p.write_bytes(data[:n])
        with pytest.raises(MediaError):
            inspect_iso(p)


def test_hostile_xml_entities_and_dtd_refused(standin, tmp_path):
    _tmp, wim, _iso = standin
    bomb = ('<?xml version="1.0"?><!DOCTYPE WIM [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            '<WIM><IMAGE INDEX="1"><NAME>&b;</NAME></IMAGE></WIM>')
    p = tmp_path / "bomb.wim"
    p.write_bytes(_with_xml(wim.read_bytes(), _xml(bomb)))
    with pytest.raises(MediaError, match="DTD or entities"):
        inspect_wim_file(p)
    ext = ('<?xml version="1.0"?><!DOCTYPE WIM [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           '<WIM><IMAGE INDEX="1"><NAME>&x;</NAME></IMAGE></WIM>')
    p.write_bytes(_with_xml(wim.read_bytes(), _xml(ext)))
    with pytest.raises(MediaError, match="DTD or entities"):
        inspect_iso(sm.make_iso(tmp_path / "ext.iso", p))


def test_hostile_xml_huge_size_refused_without_reading(standin, tmp_path):
    _tmp, wim, _iso = standin
    p = tmp_path / "huge.wim"
    data = _with_xml(wim.read_bytes(), _xml("<WIM/>"), size=media.XML_CAP + 1)
    with open(p, "wb") as f:           # sparse: the header claims 16 MiB + 1 of XML, and it is there
        f.write(data)
        f.truncate(len(data) + media.XML_CAP + 1)
    with pytest.raises(MediaError, match="over the 16 MiB"):
        inspect_wim_file(p)


def test_garbage_xml_and_empty_wim(standin, tmp_path):
    _tmp, wim, _iso = standin
    p = tmp_path / "g.wim"
    p.write_bytes(_with_xml(wim.read_bytes(), b"\xff\xfe" + "<WIM><IMAGE".encode("utf-16-le")))
    with pytest.raises(MediaError, match="does not parse"):
        inspect_wim_file(p)
    p.write_bytes(_with_xml(wim.read_bytes(), _xml("<WIM></WIM>")))
    with pytest.raises(MediaError, match="no images"):
        inspect_wim_file(p)
    p.write_bytes(_with_xml(wim.read_bytes(), _xml("<NOTWIM/>")))
    with pytest.raises(MediaError, match="not <WIM>"):
        inspect_wim_file(p)


def test_compressed_xml_goes_to_wiminfo_which_refuses_garbage(standin, tmp_path):
    """A COMPRESSED flag on a resource that is not: our parser hands it to wiminfo (the fallback),
    whose refusal becomes a clear MediaError; the pycdlib-only reader says why it stops."""
    _tmp, wim, _iso = standin
    p = tmp_path / "c.wim"
    p.write_bytes(_with_xml(wim.read_bytes(), _xml("<WIM/>"), flags=0x02 | 0x04))
    with pytest.raises(MediaError, match="compressed"):
        inspect_wim_file(p, reader="pycdlib")
    with pytest.raises(MediaError, match="wiminfo"):
        inspect_iso(sm.make_iso(tmp_path / "c.iso", p))


def test_not_udf_and_no_wim(tmp_path):
    import io

    import pycdlib
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3)
    iso.add_fp(io.BytesIO(b"x"), 1, "/README.TXT;1")
    iso.write(str(tmp_path / "plain.iso"))
    iso.close()
    with pytest.raises(MediaError, match="no UDF"):
        inspect_iso(tmp_path / "plain.iso")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, udf="2.60")
    iso.add_fp(io.BytesIO(b"x"), 1, "/README.TXT;1", udf_path="/README.TXT")
    iso.write(str(tmp_path / "udf.iso"))
    iso.close()
    with pytest.raises(MediaError, match="no sources/install.wim"):
        inspect_iso(tmp_path / "udf.iso")
    (tmp_path / "junk.iso").write_bytes(os.urandom(4096))
    with pytest.raises(MediaError, match="not a readable ISO"):
        inspect_iso(tmp_path / "junk.iso")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("IRONFORGE_TEST_WINDOWS_ISO"),
                    reason="IRONFORGE_TEST_WINDOWS_ISO does not name real Windows installer media")
def test_real_media_pycdlib_and_wiminfo_agree():
    iso = Path(os.environ["IRONFORGE_TEST_WINDOWS_ISO"])
    a, b = inspect_iso(iso), inspect_iso(iso, reader="wiminfo")
    assert a.editions and _labels(a) == _labels(b)
    assert all(e.arch in ("x86_64", "i686", "arm64") and e.build for e in a.editions)
