"""The .reg export: what hivexregedit reads back into a hive is exactly what was applied."""

import subprocess

from builder.windows import driver_registry as DR
from builder.windows.hive_edits import Hive, KeyEdit, Value
from builder.windows.regfile import export, value_line
from windows.phony import make_empty_hive


def test_value_lines():
    assert value_line("Start", 4, b"\0\0\0\0") == '"Start"=dword:00000000'
    assert value_line("", 1, "a\\b".encode("utf-16-le") + b"\0\0") == '@="a\\\\b"'
    assert value_line("B", 3, b"\x01\xff") == '"B"=hex:01,ff'
    assert value_line("E", 2, b"a\0\0\0").startswith('"E"=hex(2):61,00,00,00')


def test_export_round_trips_through_hivexregedit(tmp_path):
    """Edits applied to hive A, exported as .reg, merged by hivexregedit into empty hive B:
    A and B export identically."""
    edits = DR.storage_edits("ControlSet001", ["viostor", "vioscsi"], "amd64", True)
    edits += DR.storage_edits("ControlSet001", ["viostor"], "x86", False)
    edits.append(DR.crash_control("ControlSet001"))
    edits.append(KeyEdit("SYSTEM", ("Odd",), (Value.sz("quote\"d", 'v"a\\l'), Value.dword("", 7))))
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(make_empty_hive())
    b.write_bytes(make_empty_hive())
    h = Hive(a, "SYSTEM", write=True)
    changes = h.apply(edits)
    h.commit()
    reg = tmp_path / "changes.reg"
    reg.write_text(export(changes), newline="")
    subprocess.run(["hivexregedit", "--merge", str(b), "--prefix", "HKEY_LOCAL_MACHINE\\SYSTEM", str(reg)],
                   check=True, capture_output=True)
    ea = subprocess.run(["hivexregedit", "--export", str(a), "\\"], check=True, capture_output=True).stdout
    eb = subprocess.run(["hivexregedit", "--export", str(b), "\\"], check=True, capture_output=True).stdout
    assert ea == eb and b"guestor.inf_amd64_0000000000000000" in ea
