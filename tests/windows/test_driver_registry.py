"""The boot-driver registry edits as data (spec §2.2, §2.3)."""

from builder.windows import driver_registry as DR
from builder.windows.hive_edits import REG_EXPAND_SZ, REG_SZ, decode_sz, sz


def _dp(edit):
    (v,) = edit.values
    return v.type, decode_sz(v.data)


def test_device_path_appended_once_type_kept():
    assert _dp(DR.device_path((REG_EXPAND_SZ, sz(r"%SystemRoot%\inf")))) == (
        REG_EXPAND_SZ, r"%SystemRoot%\inf;%SystemRoot%\Drivers\VirtIO")
    assert _dp(DR.device_path((REG_SZ, sz(r"C:\x;")))) == (REG_SZ, r"C:\x;%SystemRoot%\Drivers\VirtIO")
    already = (REG_EXPAND_SZ, sz(r"%SystemRoot%\inf;%SYSTEMROOT%\drivers\virtio"))
    assert DR.device_path(already).values[0].data == already[1]          # never twice
    assert _dp(DR.device_path(None)) == (REG_EXPAND_SZ, r"%SystemRoot%\inf;%SystemRoot%\Drivers\VirtIO")


def test_cdb_or_ddb():
    cdb = DR.storage_edits("ControlSet001", ["viostor"], "x86", False)
    assert [e.path[-1] for e in cdb] == ["viostor", "PCI#VEN_1AF4&DEV_1001&REV_00", "PCI#VEN_1AF4&DEV_1042&REV_01"]
    ddb = DR.storage_edits("ControlSet001", ["viostor", "vioscsi"], "amd64", True)
    assert not any("CriticalDeviceDatabase" in e.path for e in ddb)
    assert all("SUBSYS" not in "\\".join(e.path) for e in ddb)
    assert DR.package_label("x86") == "guestor.inf_x86_0000000000000000"
