"""Offline injection into PHONY Windows guests with a STAND-IN virtio-win tree.

Each of the six phony guests is injected once (conftest ``injected``: the CLI, the library, the
drivers stage) and read back in one launch; every key, value type and value of spec §2.2/2.3 is
read back here with python3-hivex, and every copied file's bytes are traced to its source path.
"""

import struct

import hivex
import pytest

from windows import standin_virtio_win as S

STANDARD = ["win7-x86", "win10-x86", "win10-amd64", "win11-amd64", "win2k19-amd64", "win2k22-amd64"]
NEW = {  # guest -> (virtio-win OS folder, arch folder, osinfo, control set)
    "win10-x86": ("w10", "x86", "win10", "ControlSet001"),
    "win10-amd64": ("w10", "amd64", "win10", "ControlSet001"),
    "win11-amd64": ("w11", "amd64", "win11", "ControlSet001"),
    "win2k19-amd64": ("2k19", "amd64", "win2k19", "ControlSet001"),
    "win2k22-amd64": ("2k22", "amd64", "win2k22", "ControlSet002"),
}
COMMON = {"viostor.inf", "viostor.sys", "viostor.cat", "vioscsi.inf", "vioscsi.sys", "vioscsi.cat",
          "netkvm.inf", "netkvm.sys", "netkvm.cat", "netkvmco.exe", "netkvmp.exe",
          "balloon.inf", "balloon.sys", "balloon.cat", "blnsvr.exe",
          "vioser.inf", "vioser.sys", "vioser.cat", "viorng.inf", "viorng.sys", "viorng.cat",
          "pvpanic.inf", "pvpanic.sys", "pvpanic.cat", "qemupciserial.inf", "qemupciserial.cat"}
FILES_NEW = COMMON | {"vioinput.inf", "vioinput.sys", "vioinput.cat", "viofs.inf", "viofs.sys",
                      "viofs.cat", "fwcfg.inf", "fwcfg.sys", "fwcfg.cat"}
FILES_W7 = COMMON | {"qemufwcfg.inf", "qemufwcfg.cat"}
SCSI = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
IDS = {"viostor": ["VEN_1AF4&DEV_1001&REV_00", "VEN_1AF4&DEV_1042&REV_01"],
       "vioscsi": ["VEN_1AF4&DEV_1004&REV_00", "VEN_1AF4&DEV_1048&REV_01"]}


def facts(name):
    if name == "win7-x86":
        return "w7", "x86", "win7", "ControlSet001"
    return NEW[name]


class Reg:
    """Read-only python3-hivex view for assertions."""

    def __init__(self, path):
        self.h = hivex.Hivex(str(path))

    def node(self, path):
        n = self.h.root()
        for p in path.split("\\"):
            n = self.h.node_get_child(n, p)
            if not n:
                return None
        return n

    def values(self, path):
        n = self.node(path)
        assert n, f"missing key {path}"
        return {self.h.value_key(v): self.h.value_value(v) for v in self.h.node_values(n)}


def sz(s):
    return (1, s.encode("utf-16-le") + b"\0\0")


def esz(s):
    return (2, s.encode("utf-16-le") + b"\0\0")


def dw(n):
    return (4, struct.pack("<I", n))


def msz(items):
    return (7, b"".join(i.encode("utf-16-le") + b"\0\0" for i in items) + b"\0\0")


@pytest.mark.parametrize("name", STANDARD)
def test_stand_in_detection_from_hives_and_pe(injected, name):
    _os, arch, osinfo, ccs = facts(name)
    g = injected[name]["report"]["guest"]
    assert (g["version_osinfo"], g["arch_word"], g["control_set"]) == (osinfo, arch, ccs)


@pytest.mark.parametrize("name", STANDARD)
def test_stand_in_files_copied_flattened_lowercase(readback, name):
    os_dir, arch, _osinfo, _ccs = facts(name)
    files = readback[name]["files"]
    assert set(files) == (FILES_W7 if name == "win7-x86" else FILES_NEW)
    for target, data in files.items():
        origin = data.decode().split(": ", 1)[1].strip()
        parts = origin.split("/")
        assert (parts[1], parts[2], parts[3].lower()) == (os_dir, arch, target), origin
    drivers = readback[name]["drivers"]
    for d in ("viostor", "vioscsi"):
        assert drivers[f"{d}.sys"] == S.content(f"{d}/{os_dir}/{arch}/{d}.sys")
    assert drivers["intelide.sys"] == b"phony intelide.sys\n"       # what was there stays
    assert readback[name]["config_leftovers"] == []                  # no temporary hive left


@pytest.mark.parametrize("name", STANDARD)
def test_stand_in_system_hive_services_and_boot_database(readback, name):
    os_dir, arch, _osinfo, ccs = facts(name)
    r = Reg(readback[name]["hives"]["SYSTEM"])
    for d in ("viostor", "vioscsi"):
        assert r.values(f"{ccs}\\Services\\{d}") == {
            "Type": dw(1), "Start": dw(0), "Group": sz("SCSI miniport"), "ErrorControl": dw(1),
            "ImagePath": esz(f"system32\\drivers\\{d}.sys")}
    if name == "win7-x86":
        assert r.node("DriverDatabase") is None
        for d, ids in IDS.items():
            for pci in ids:
                assert r.values(f"{ccs}\\Control\\CriticalDeviceDatabase\\PCI#{pci}") == {
                    "Service": sz(d), "ClassGUID": sz(SCSI)}
        # the guest's own entry is untouched
        assert r.values(f"{ccs}\\Control\\CriticalDeviceDatabase\\pci#ven_8086&dev_7010")["Service"] == sz("intelide")
        return
    assert r.node(f"{ccs}\\Control\\CriticalDeviceDatabase") is None
    label = f"guestor.inf_{arch}_0000000000000000"
    assert r.values("DriverDatabase\\DriverInfFiles\\guestor.inf") == {
        "": msz([label]), "Active": sz(label), "Configurations": msz(["guestor_conf", "guestor_vioscsi_conf"])}
    assert r.values(f"DriverDatabase\\DriverPackages\\{label}") == {
        "Version": (3, bytes.fromhex("00ff090000000000") + bytes.fromhex("7be9364d25e3ce11bfc108002be10318")
                    + b"\0" * 24)}
    for d, conf in (("viostor", "guestor_conf"), ("vioscsi", "guestor_vioscsi_conf")):
        assert r.values(f"DriverDatabase\\DriverPackages\\{label}\\Configurations\\{conf}") == {
            "ConfigFlags": dw(0), "Service": sz(d)}
        for pci in IDS[d]:
            assert r.values(f"DriverDatabase\\DeviceIds\\PCI\\{pci}") == {"guestor.inf": (3, b"\x01\xff\x00\x00")}
            assert r.values(f"DriverDatabase\\DriverPackages\\{label}\\Descriptors\\PCI\\{pci}") == {
                "Configuration": sz(conf)}
    # SUBSYS-less IDs only (current virt-v2v), nothing else under DeviceIds\PCI
    kids = [r.h.node_name(c) for c in r.h.node_children(r.node("DriverDatabase\\DeviceIds\\PCI"))]
    assert sorted(kids) == sorted(IDS["viostor"] + IDS["vioscsi"])


@pytest.mark.parametrize("name", STANDARD)
def test_stand_in_crash_control_setup_and_device_path(readback, injected, name):
    _os, _arch, _osinfo, ccs = facts(name)
    r = Reg(readback[name]["hives"]["SYSTEM"])
    cc = r.values(f"{ccs}\\Control\\CrashControl")
    assert cc["AutoReboot"] == dw(0) and cc["CrashDumpEnabled"] == dw(7)
    setup = r.values("Setup")
    assert setup["SetupType"] == dw(2)
    assert setup["CmdLine"] == sz(r"cmd.exe /c %SystemRoot%\Setup\ironforge\firstboot.cmd")
    assert setup["SystemSetupInProgress"] == dw(0)
    soft = Reg(readback[name]["hives"]["SOFTWARE"])
    assert soft.values("Microsoft\\Windows\\CurrentVersion")["DevicePath"] == esz(
        r"%SystemRoot%\inf;%SystemRoot%\Drivers\VirtIO")
    if ccs == "ControlSet002":                 # the stale control set is left alone
        assert r.node("ControlSet001\\Services\\viostor") is None
        assert r.values("ControlSet001\\Control\\CrashControl")["AutoReboot"] == dw(1)


@pytest.mark.parametrize("name", STANDARD)
def test_stand_in_first_boot_script(readback, injected, name):
    script = readback[name]["script"]
    assert script is not None and b"\r\n" in script and b"\n" not in script.replace(b"\r\n", b"")
    text = script.decode("ascii")
    infs = injected[name]["report"]["firstboot"]["infs"]
    want = ["viostor.inf", "vioscsi.inf", "netkvm.inf", "balloon.inf", "vioser.inf", "viorng.inf"]
    if name != "win7-x86":
        want.append("vioinput.inf")
    assert infs == want
    assert f"for %%I in ({' '.join(want)}) do call :one %%I" in text
    assert "set MAX=3" in text and "pnputil.exe\" -i -a" in text
    assert 'reg add "HKLM\\SYSTEM\\Setup" /v SetupType /t REG_DWORD /d 0 /f' in text
    for never in ("pvpanic.inf", "fwcfg.inf", "qemufwcfg.inf", "smbus.inf"):
        assert never not in text


@pytest.mark.parametrize("name", STANDARD)
def test_stand_in_report_and_reg_record(injected, name):
    rec = injected[name]["records"]
    report = injected[name]["report"]
    reg = open(rec["reg"], "rb").read().decode()
    assert reg.startswith("Windows Registry Editor Version 5.00\r\n")
    keys = {c["key"] for c in report["registry"]}
    for c in report["registry"]:
        assert f"[HKEY_LOCAL_MACHINE\\{c['hive']}\\{c['key']}]" in reg
    assert any(k.endswith("Services\\viostor") for k in keys) and any(k.endswith("Services\\vioscsi") for k in keys)
    assert report["written"] and report["changed"]
    assert all(f["action"] == "add" for f in report["files"])


def test_stand_in_stage_leaves_its_backing_image_alone(injected):
    w = injected["win11-amd64"]
    import subprocess
    info = subprocess.run(["qemu-img", "info", "--output=json", str(w["disk"])], capture_output=True, text=True)
    assert str(w["backing"]) in info.stdout
