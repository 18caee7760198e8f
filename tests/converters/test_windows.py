"""Foreign PV services of a Windows guest (Xen, Parallels, VMware) found in a SYSTEM hive and
disabled (Start=4) through the KeyEdits builder.windows.inject applies. The hive is a STAND-IN
made with python3-hivex (tests/windows/phony.py): no Windows here; no launch."""

from __future__ import annotations

from windows.phony import _dw, make_hive

from builder.windows.hive_edits import Hive
from converters import windows


def test_present_pv_services_are_disabled_and_others_left_alone(tmp_path):
    ccs = "ControlSet001"
    keys = {f"{ccs}\\Services\\{n}": {"Start": _dw(s)} for n, s in
            (("XenVbd", 0), ("prl_fs", 1), ("VMTools", 2), ("viostor", 0), ("Tcpip", 1))}
    path = make_hive(tmp_path / "SYSTEM", keys)
    hive = Hive(path, "SYSTEM", write=True)
    found = windows.present_pv_services(hive, ccs)
    assert found == {"XenVbd": "Xen", "prl_fs": "Parallels", "VMTools": "VMware"}
    changes = hive.apply(list(windows.pv_edits(ccs, found)))
    assert sorted(c.path[-1] for c in changes) == ["VMTools", "XenVbd", "prl_fs"]
    assert all(c.value == "Start" and "paravirtual" in c.why for c in changes)
    hive.commit()
    again = Hive(path, "SYSTEM")
    assert [again.dword((ccs, "Services", n), "Start") for n in ("XenVbd", "prl_fs", "VMTools")] == [4, 4, 4]
    assert again.dword((ccs, "Services", "viostor"), "Start") == 0
    assert again.dword((ccs, "Services", "Tcpip"), "Start") == 1
