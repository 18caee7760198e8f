"""Registry edits as data, applied with python3-hivex to a generated hive."""

import pytest

from builder.errors import WindowsImageError
from builder.windows.hive_edits import (REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ, REG_SZ, Hive, KeyEdit,
                                        Value, decode_multi_sz, decode_sz, multi_sz, sz)
from windows.phony import make_empty_hive


@pytest.fixture
def hive(tmp_path):
    p = tmp_path / "SYSTEM"
    p.write_bytes(make_empty_hive())
    return p


def test_encodings():
    assert sz("ab") == b"a\0b\0\0\0"
    assert multi_sz(["a", "b"]) == b"a\0\0\0b\0\0\0\0\0"
    assert decode_multi_sz(multi_sz(["x", "yz"])) == ["x", "yz"]
    assert decode_sz(b"a\0b\0\0\0\0\0") == "ab" and decode_sz(b"a\0b") == "a"   # odd length tolerated


def test_apply_creates_keys_and_values_then_changes_nothing(hive):
    edits = [KeyEdit("SYSTEM", ("ControlSet001", "Services", "viostor"),
                     (Value.dword("Start", 0), Value.expand_sz("ImagePath", r"system32\drivers\viostor.sys"))),
             KeyEdit("SYSTEM", ("DriverDatabase", "DriverInfFiles", "guestor.inf"),
                     (Value.multi_sz("", ["L"]),)),
             KeyEdit("SOFTWARE", ("Other",), (Value.sz("x", "y"),))]      # another hive: skipped
    h = Hive(hive, "SYSTEM", write=True)
    changes = h.apply(edits)
    created = [c.path for c in changes if c.value is None]
    assert created == [("ControlSet001",), ("ControlSet001", "Services"),
                       ("ControlSet001", "Services", "viostor"), ("DriverDatabase",),
                       ("DriverDatabase", "DriverInfFiles"), ("DriverDatabase", "DriverInfFiles", "guestor.inf")]
    assert [(c.value, c.old, c.new[0]) for c in changes if c.value is not None] == [
        ("Start", None, REG_DWORD), ("ImagePath", None, REG_EXPAND_SZ), ("", None, REG_MULTI_SZ)]
    h.commit()
    h2 = Hive(hive, "SYSTEM", write=True)
    assert h2.apply(edits) == []                                   # idempotent
    assert h2.dword(("controlset001", "SERVICES", "VioStor"), "start") == 0   # case-insensitive
    assert h2.value(("DriverDatabase", "DriverInfFiles", "guestor.inf"), "") == (REG_MULTI_SZ, multi_sz(["L"]))


def test_apply_records_the_old_value(hive):
    h = Hive(hive, "SYSTEM", write=True)
    h.apply([KeyEdit("SYSTEM", ("Setup",), (Value.dword("SetupType", 0),))])
    ch = h.apply([KeyEdit("SYSTEM", ("Setup",), (Value.dword("SetupType", 2), Value.sz("CmdLine", "x")))])
    assert [(c.value, c.old, c.new) for c in ch] == [
        ("SetupType", (REG_DWORD, b"\0\0\0\0"), (REG_DWORD, b"\2\0\0\0")), ("CmdLine", None, (REG_SZ, sz("x")))]
    assert ch[0].to_dict()["old"] == {"type": "REG_DWORD", "value": 0}


def test_missing_value_and_key_read_as_none(hive):
    h = Hive(hive, "SYSTEM")
    assert h.value(("Nope",), "x") is None and h.string(("Nope",), "x") is None
    assert h.children(("Nope",)) == [] and h.values(("Nope",)) == {}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_malformed_hive_is_a_clear_error(hive, damage):
    data = hive.read_bytes()
    hive.write_bytes({"truncated": data[:2000], "garbage": b"regf" + b"\xff" * 8000, "empty": b""}[damage])
    with pytest.raises(WindowsImageError, match="SYSTEM hive"):
        Hive(hive, "SYSTEM")
