"""autounattend.xml read back with defusedxml and checked per version, arch and firmware."""

from __future__ import annotations

import base64

import pytest
from defusedxml import ElementTree as ET

from builder.secrets import Secret
from builder.windows import unattend
from builder.windows.unattend import Account, Answer

NS = {"u": "urn:schemas-microsoft-com:unattend"}
WCM = "{http://schemas.microsoft.com/WMIConfig/2002/State}"

# (osinfo, server, arch, firmware): what the shipped recipes build, plus Windows 7
MATRIX = [("win10", False, "x86", "bios"), ("win10", False, "amd64", "uefi"), ("win10", False, "amd64", "bios"),
          ("win11", False, "amd64", "uefi"), ("win2k19", True, "amd64", "uefi"),
          ("win2k22", True, "amd64", "bios"), ("win2k25", True, "amd64", "uefi"), ("win7", False, "x86", "bios")]


def _answer(osinfo="win10", server=False, arch="amd64", firmware="uefi", **kw) -> Answer:
    base = dict(arch=arch, firmware=firmware, osinfo=osinfo, server=server, image_index=4,
                image_name="Windows Stand-in Edition", computer_name="WIN-TEST",
                admin_password=Secret("Adm1n-pw", "test"), locale="de-DE",
                timezone="W. Europe Standard Time")
    base.update(kw)
    return Answer(**base)


def _parse(xml: bytes):
    return ET.fromstring(xml)


def _pass(root, name):
    (s,) = [s for s in root.findall("u:settings", NS) if s.get("pass") == name]
    return s


def _component(root, pass_name, comp):
    (c,) = [c for c in _pass(root, pass_name).findall("u:component", NS) if c.get("name") == comp]
    return c


def _texts(el, path):
    return [e.text for e in el.findall(path, NS)]


@pytest.mark.parametrize("osinfo,server,arch,firmware", MATRIX)
def test_every_component_has_the_arch_and_the_layout_fits_the_firmware(osinfo, server, arch, firmware):
    xml = unattend.render(_answer(osinfo, server, arch, firmware))
    root = _parse(xml)
    comps = root.findall("u:settings/u:component", NS)
    assert len(comps) == 7      # 3 in windowsPE, 2 in specialize, 2 in oobeSystem
    assert {c.get("processorArchitecture") for c in comps} == {arch}
    assert {c.get("publicKeyToken") for c in comps} == {"31bf3856ad364e35"}
    assert [s.get("pass") for s in root.findall("u:settings", NS)] == ["windowsPE", "specialize", "oobeSystem"]
    setup = _component(root, "windowsPE", "Microsoft-Windows-Setup")
    disk = setup.find("u:DiskConfiguration/u:Disk", NS)
    types = _texts(disk, "u:CreatePartitions/u:CreatePartition/u:Type")
    target = setup.find("u:ImageInstall/u:OSImage/u:InstallTo/u:PartitionID", NS).text
    if firmware == "uefi":
        assert types == ["EFI", "MSR", "Primary"] and target == "3"
        assert _texts(disk, "u:ModifyPartitions/u:ModifyPartition/u:Format") == ["FAT32", "NTFS"]
        assert disk.find("u:ModifyPartitions/u:ModifyPartition/u:Active", NS) is None
    else:
        assert types == ["Primary", "Primary"] and target == "2"
        assert _texts(disk, "u:ModifyPartitions/u:ModifyPartition/u:Active") == ["true"]
    windows_part = disk.findall("u:ModifyPartitions/u:ModifyPartition", NS)[-1]
    assert windows_part.find("u:PartitionID", NS).text == target and windows_part.find("u:Letter", NS).text == "C"
    meta = setup.find("u:ImageInstall/u:OSImage/u:InstallFrom/u:MetaData", NS)
    assert (meta.find("u:Key", NS).text, meta.find("u:Value", NS).text) == ("/IMAGE/INDEX", "4")
    oobe = _component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup").find("u:OOBE", NS)
    assert (oobe.find("u:HideOnlineAccountScreens", NS) is None) == (server or osinfo == "win7")


def test_locale_timezone_and_computer_name():
    root = _parse(unattend.render(_answer()))
    pe = _component(root, "windowsPE", "Microsoft-Windows-International-Core-WinPE")
    assert pe.find("u:SetupUILanguage/u:UILanguage", NS).text == "de-DE"
    assert {pe.find(f"u:{k}", NS).text for k in ("InputLocale", "SystemLocale", "UILanguage", "UserLocale")} == {"de-DE"}
    spec = _component(root, "specialize", "Microsoft-Windows-Shell-Setup")
    assert spec.find("u:ComputerName", NS).text == "WIN-TEST"
    assert spec.find("u:TimeZone", NS).text == "W. Europe Standard Time"
    assert unattend.computer_name("windows-server-2022-amd64") == "WINDOWS-SERVER"
    assert unattend.computer_name("my_w10.x86") == "MY-W10-X86"
    assert len(unattend.computer_name("a" * 40)) == 15


def test_driver_paths_cover_candidate_letters_with_unique_keys():
    root = _parse(unattend.render(_answer()))
    dp = _component(root, "windowsPE", "Microsoft-Windows-PnpCustomizationsWinPE").find("u:DriverPaths", NS)
    entries = dp.findall("u:PathAndCredentials", NS)
    keys = [e.get(f"{WCM}keyValue") for e in entries]
    paths = [e.find("u:Path", NS).text for e in entries]
    assert len(set(keys)) == len(keys) == len(unattend.DRIVE_LETTERS)
    assert paths[:3] == ["D:\\virtio", "E:\\virtio", "F:\\virtio"]
    assert "C:\\virtio" not in paths and all(len(p) <= 259 for p in paths)


def _decode(value: str) -> str:
    return base64.b64decode(value).decode("utf-16-le")


def test_passwords_encoded_as_setup_expects_and_never_plain():
    a = _answer(accounts=(Account("alice", Secret("al1ce-pw", "t"), True), Account("bob", Secret("b0b-pw", "t"))))
    xml = unattend.render(a)
    for plain in (b"Adm1n-pw", b"al1ce-pw", b"b0b-pw"):
        assert plain not in xml
    root = _parse(xml)
    shell = _component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    admin = shell.find("u:UserAccounts/u:AdministratorPassword", NS)
    assert _decode(admin.find("u:Value", NS).text) == "Adm1n-pwAdministratorPassword"
    assert admin.find("u:PlainText", NS).text == "false"
    locals_ = shell.findall("u:UserAccounts/u:LocalAccounts/u:LocalAccount", NS)
    got = [(la.find("u:Name", NS).text, la.find("u:Group", NS).text, _decode(la.find("u:Password/u:Value", NS).text),
            la.find("u:Password/u:PlainText", NS).text) for la in locals_]
    assert got == [("alice", "Administrators", "al1ce-pwPassword", "false"),
                   ("bob", "Users", "b0b-pwPassword", "false")]
    logon = shell.find("u:AutoLogon", NS)
    assert logon.find("u:Username", NS).text == "Administrator" and logon.find("u:LogonCount", NS).text == "1"
    assert _decode(logon.find("u:Password/u:Value", NS).text) == "Adm1n-pwPassword"


def test_product_key_only_when_given():
    def key(a):
        pk = _component(_parse(unattend.render(a)), "windowsPE", "Microsoft-Windows-Setup").find(
            "u:UserData/u:ProductKey", NS)
        return pk.find("u:Key", NS), pk.find("u:WillShowUI", NS).text
    k, ui = key(_answer())
    assert k is None and ui == "OnError"
    k, _ = key(_answer(product_key=Secret("VDYBN-27WPP-V4HQT-9VMD4-VMK7H", "t")))
    assert k.text == "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"


def _run_sync(root, pass_name, comp):
    c = _component(root, pass_name, comp)
    return [(int(r.find("u:Order", NS).text), r.find("u:Path", NS).text)
            for r in c.findall("u:RunSynchronous/u:RunSynchronousCommand", NS)]


def test_markers_per_pass_to_com1_and_labconfig_only_for_bypass():
    for bypass in (False, True):
        root = _parse(unattend.render(_answer("win11", tpm_bypass=bypass)))
        pe = _run_sync(root, "windowsPE", "Microsoft-Windows-Setup")
        assert pe[0] == (1, "cmd /c mode COM1:115200,n,8,1 >nul & echo IRONFORGE-WIN pass=windowsPE>COM1")
        lab = [p for _o, p in pe if "LabConfig" in p]
        if bypass:
            assert [p.split("/v ")[1].split()[0] for p in lab] == ["BypassTPMCheck", "BypassSecureBootCheck",
                                                                   "BypassRAMCheck"]
            assert all("/t REG_DWORD /d 1" in p for p in lab)
        else:
            assert lab == []
        assert [o for o, _p in pe] == list(range(1, len(pe) + 1))
        spec = _run_sync(root, "specialize", "Microsoft-Windows-Deployment")
        assert spec[0][1].endswith("echo IRONFORGE-WIN pass=specialize>COM1")


def test_first_logon_runs_marker_then_user_commands_then_completion_script():
    root = _parse(unattend.render(_answer(firstlogon_commands=("powershell -c \"Set-Thing <x> & y\"",))))
    cmds = _component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup").findall(
        "u:FirstLogonCommands/u:SynchronousCommand", NS)
    lines = [c.find("u:CommandLine", NS).text for c in cmds]
    assert [int(c.find("u:Order", NS).text) for c in cmds] == [1, 2, 3, 4]
    assert lines[0].endswith("echo IRONFORGE-WIN pass=firstlogon>COM1")
    assert lines[1] == "powershell -c \"Set-Thing <x> & y\""           # escaped in XML, intact parsed
    assert "%d:\\ironforge\\complete.cmd" in lines[2] and "(D E F G" in lines[2]
    assert "error=no-completion-script" in lines[3] and "do if exist %d:\\ironforge\\complete.cmd exit)" in lines[3]
    script = unattend.completion_script().decode()
    assert script.count("\r\n") == len(script.splitlines())
    body = script.splitlines()
    assert body.index("echo IRONFORGE-WIN pass=done>COM1") < body.index("shutdown /s /t 0 /f")
    assert "powercfg /hibernate off" in body


def test_markers_are_exactly_what_the_watcher_parses():
    """Each pass echoes `IRONFORGE-WIN pass=<name>` to COM1: the lines the install watcher reads."""
    root = _parse(unattend.render(_answer("win11", tpm_bypass=True)))
    commands = [e.text for e in root.iter() if e.tag.split("}")[1] in ("Path", "CommandLine")]
    commands += unattend.completion_script().decode().splitlines()
    echoed = sorted({c.split("echo ", 1)[1].split(">COM1")[0] for c in commands if ">COM1" in c})
    assert echoed == sorted([f"IRONFORGE-WIN pass={p}" for p in unattend.PASSES] +
                            ["IRONFORGE-WIN error=no-completion-script"])


def test_byte_for_byte_deterministic_and_sensitive_to_inputs():
    variants = [_answer(*m) for m in MATRIX]
    outs = [unattend.render(a) for a in variants]
    assert outs == [unattend.render(a) for a in variants]
    # Server 2019 and 2025 on UEFI get the same file: the image index, not the answer, picks the year
    assert outs[MATRIX.index(("win2k19", True, "amd64", "uefi"))] == outs[MATRIX.index(("win2k25", True, "amd64", "uefi"))]
    assert len(set(outs)) == len(outs) - 1
    assert unattend.render(_answer(image_index=5)) != unattend.render(_answer())
    assert all(o.startswith(b'<?xml version="1.0" encoding="utf-8"?>\r\n') for o in outs)


def test_refuses_unknown_arch_and_firmware():
    for bad in (dict(arch="arm64"), dict(firmware="coreboot")):
        with pytest.raises(ValueError):
            unattend.render(_answer(**bad))


def test_image_name_cannot_break_out_of_the_comment():
    root = _parse(unattend.render(_answer(image_name="x --> <evil/> <!--")))
    assert root.find("evil") is None and root.tag.endswith("unattend")


@pytest.mark.parametrize("n", [0, 1, 3])
def test_accounts_section_only_when_there_are_accounts(n):
    accts = tuple(Account(f"u{i}", Secret("p", "t")) for i in range(n))
    shell = _component(_parse(unattend.render(_answer(accounts=accts))), "oobeSystem", "Microsoft-Windows-Shell-Setup")
    assert len(shell.findall("u:UserAccounts/u:LocalAccounts/u:LocalAccount", NS)) == n
    assert (shell.find("u:UserAccounts/u:LocalAccounts", NS) is None) == (n == 0)
