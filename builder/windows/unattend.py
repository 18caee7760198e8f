"""autounattend.xml for one Windows install: a pure function of an ``Answer``, byte for byte.

What it does, pass by pass (spec §3):
- windowsPE: locale; DriverPaths over candidate drive letters of our answer CD (we never know
  which letter it gets); the disk laid out for the firmware (BIOS: MBR, 100 MB active system
  partition + C:; UEFI: GPT, EFI 100 MB + MSR 16 MB + C:); the image chosen by its index in the
  media's install.wim (read from the media, not assumed); the product key when the recipe has
  one; on Windows 11 with tpm = bypass, the three LabConfig values Setup honours.
- specialize: computer name, time zone.
- oobeSystem: OOBE screens hidden, Administrator password, local accounts, one auto-logon as
  Administrator whose FirstLogonCommands run the recipe's commands and then the completion
  script from the answer CD, which reports done and powers the machine off.

Each pass writes a progress line ``IRONFORGE-WIN pass=<windowsPE|specialize|firstlogon|done>`` to
COM1; the install watcher reads exactly these.

Passwords are written the way Setup expects with PlainText=false: base64 of the UTF-16LE
encoding of the password followed by "Password" (or "AdministratorPassword" for the
Administrator account). That is an encoding, not a hash: the file is a secret, written 0600.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from builder.secrets import Secret

MARKER = "IRONFORGE-WIN pass="
PASSES = ("windowsPE", "specialize", "firstlogon", "done")
# Letters our answer CD may get: after C:, the Windows ISO and the answer ISO take the first free
# ones; further letters cover extra disks and CD drives Setup enumerates first.
DRIVE_LETTERS = tuple("DEFGHIJKLMNOP")
CD_DRIVERS_DIR = "virtio"
COMPLETION_DIR = "ironforge"
COMPLETION_SCRIPT = "complete.cmd"
COM1_SETUP = "mode COM1:115200,n,8,1 >nul"
_NS = "urn:schemas-microsoft-com:unattend"
_WCM = "http://schemas.microsoft.com/WMIConfig/2002/State"
_NL = "\r\n"


@dataclass(frozen=True)
class Account:
    name: str
    password: Secret
    admin: bool = False


@dataclass(frozen=True)
class Answer:
    """Everything an answer file depends on; nothing else goes in."""

    arch: str                         # Windows' word: "x86" or "amd64"
    firmware: str                     # "bios" or "uefi"
    osinfo: str                       # "win10", "win11", "win2k22", …
    server: bool
    image_index: int                  # /IMAGE/INDEX in the media's install.wim
    image_name: str                   # for people reading the file
    computer_name: str
    admin_password: Secret
    locale: str = "en-US"
    timezone: str = "UTC"
    product_key: Secret | None = None
    accounts: tuple[Account, ...] = ()
    tpm_bypass: bool = False          # Windows 11 without swtpm: LabConfig
    firstlogon_commands: tuple[str, ...] = field(default_factory=tuple)


def encode_password(secret: Secret, admin: bool = False) -> str:
    """Setup's PlainText=false form: base64(UTF-16LE(password + "Password"/"AdministratorPassword"))."""
    suffix = "AdministratorPassword" if admin else "Password"
    return base64.b64encode((secret.reveal() + suffix).encode("utf-16-le")).decode("ascii")


def computer_name(recipe_name: str) -> str:
    """A NetBIOS name from the recipe's name: letters, digits, '-', at most 15, not all digits."""
    name = re.sub(r"[^A-Z0-9-]", "-", recipe_name.upper())[:15].strip("-") or "IRONFORGE"
    return "WIN-" + name[:11].strip("-") if name.isdigit() else name


def marker_command(pass_name: str) -> str:
    """One cmd line that writes the pass's progress marker to COM1."""
    return f"cmd /c {COM1_SETUP} & echo {MARKER}{pass_name}>COM1"


def completion_script() -> bytes:
    """The script the last first-logon command runs from the answer CD: no hibernation or Fast
    Startup (offline injection refuses a hibernated NTFS), the done marker, a full power-off."""
    lines = [
        "@echo off",
        "rem ironforge: the unattended install has finished; report it and power off.",
        "powercfg /hibernate off",
        'reg add "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Power" '
        "/v HiberbootEnabled /t REG_DWORD /d 0 /f >nul",
        COM1_SETUP,
        f"echo {MARKER}done>COM1",
        "shutdown /s /t 0 /f",
    ]
    return (_NL.join(lines) + _NL).encode("ascii")


# -- a small deterministic XML writer -------------------------------------------------------------

class _E:
    __slots__ = ("tag", "attrs", "children", "text")

    def __init__(self, tag: str, *children, text: str | None = None, **attrs):
        self.tag, self.children, self.text = tag, [c for c in children if c is not None], text
        self.attrs = attrs

    def render(self, out: list[str], depth: int) -> None:
        pad = "  " * depth
        attrs = "".join(f" {k.rstrip('_').replace('__', ':')}={quoteattr(str(v))}" for k, v in self.attrs.items())
        if self.text is not None:
            out.append(f"{pad}<{self.tag}{attrs}>{escape(self.text)}</{self.tag}>")
        elif not self.children:
            out.append(f"{pad}<{self.tag}{attrs} />")
        else:
            out.append(f"{pad}<{self.tag}{attrs}>")
            for c in self.children:
                c.render(out, depth + 1)
            out.append(f"{pad}</{self.tag}>")


def _t(tag: str, value) -> _E:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return _E(tag, text=str(value))


def _add(tag: str, *children, **attrs) -> _E:
    return _E(tag, *children, wcm__action="add", **attrs)


def _component(name: str, arch: str, *children) -> _E:
    # settings in the order Windows SIM writes them (by name), as Setup is used to reading them
    children = sorted((c for c in children if c is not None), key=lambda c: c.tag)
    return _E("component", *children, name=name, processorArchitecture=arch,
              publicKeyToken="31bf3856ad364e35", language="neutral", versionScope="nonSxS")


def _password(secret: Secret, admin: bool = False) -> _E:
    return _E("Password" if not admin else "AdministratorPassword",
              _t("Value", encode_password(secret, admin)), _t("PlainText", False))


# -- the passes -------------------------------------------------------------------------------------

def _disk(a: Answer) -> tuple[_E, int]:
    """DiskConfiguration for the firmware, and the partition Windows goes to."""
    if a.firmware == "uefi":
        create = [_add("CreatePartition", _t("Order", 1), _t("Type", "EFI"), _t("Size", 100)),
                  _add("CreatePartition", _t("Order", 2), _t("Type", "MSR"), _t("Size", 16)),
                  _add("CreatePartition", _t("Order", 3), _t("Type", "Primary"), _t("Extend", True))]
        modify = [_add("ModifyPartition", _t("Order", 1), _t("PartitionID", 1), _t("Format", "FAT32"),
                       _t("Label", "System")),
                  _add("ModifyPartition", _t("Order", 2), _t("PartitionID", 3), _t("Format", "NTFS"),
                       _t("Label", "Windows"), _t("Letter", "C"))]
        target = 3
    else:
        create = [_add("CreatePartition", _t("Order", 1), _t("Type", "Primary"), _t("Size", 100)),
                  _add("CreatePartition", _t("Order", 2), _t("Type", "Primary"), _t("Extend", True))]
        modify = [_add("ModifyPartition", _t("Order", 1), _t("PartitionID", 1), _t("Active", True),
                       _t("Format", "NTFS"), _t("Label", "System Reserved")),
                  _add("ModifyPartition", _t("Order", 2), _t("PartitionID", 2), _t("Format", "NTFS"),
                       _t("Label", "Windows"), _t("Letter", "C"))]
        target = 2
    disk = _E("DiskConfiguration",
              _add("Disk", _t("DiskID", 0), _t("WillWipeDisk", True),
                   _E("CreatePartitions", *create), _E("ModifyPartitions", *modify)),
              _t("WillShowUI", "OnError"))
    return disk, target


def _locale(name: str, a: Answer, winpe: bool) -> _E:
    parts = []
    if winpe:
        parts.append(_E("SetupUILanguage", _t("UILanguage", a.locale)))
    parts += [_t("InputLocale", a.locale), _t("SystemLocale", a.locale), _t("UILanguage", a.locale),
              _t("UserLocale", a.locale)]
    return _component(name, a.arch, *parts)


def _windows_pe(a: Answer) -> _E:
    paths = [_add("PathAndCredentials", _t("Path", f"{letter}:\\{CD_DRIVERS_DIR}"), wcm__keyValue=str(i))
             for i, letter in enumerate(DRIVE_LETTERS, 1)]
    commands = [marker_command("windowsPE")]
    if a.tpm_bypass:
        commands += [f"reg add HKLM\\SYSTEM\\Setup\\LabConfig /v {v} /t REG_DWORD /d 1 /f"
                     for v in ("BypassTPMCheck", "BypassSecureBootCheck", "BypassRAMCheck")]
    run = _E("RunSynchronous", *[_add("RunSynchronousCommand", _t("Order", i), _t("Path", c))
                                 for i, c in enumerate(commands, 1)])
    disk, target = _disk(a)
    key = [_t("Key", a.product_key.reveal())] if a.product_key is not None else []
    setup = _component(
        "Microsoft-Windows-Setup", a.arch, run, disk,
        _E("ImageInstall", _E("OSImage",
                              _E("InstallFrom", _add("MetaData", _t("Key", "/IMAGE/INDEX"),
                                                     _t("Value", a.image_index))),
                              _E("InstallTo", _t("DiskID", 0), _t("PartitionID", target)),
                              _t("WillShowUI", "OnError"))),
        _E("UserData", _t("AcceptEula", True), _t("FullName", "ironforge"),
           _t("Organization", "ironforge"), _E("ProductKey", *key, _t("WillShowUI", "OnError"))))
    return _E("settings",
              _locale("Microsoft-Windows-International-Core-WinPE", a, winpe=True),
              _component("Microsoft-Windows-PnpCustomizationsWinPE", a.arch, _E("DriverPaths", *paths)),
              setup, pass_="windowsPE")


def _specialize(a: Answer) -> _E:
    commands = [marker_command("specialize")]
    if a.osinfo == "win11":  # no network during OOBE: let it continue without a Microsoft account
        commands.append("reg add HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\OOBE "
                        "/v BypassNRO /t REG_DWORD /d 1 /f")
    return _E("settings",
              _component("Microsoft-Windows-Shell-Setup", a.arch, _t("ComputerName", a.computer_name),
                         _t("TimeZone", a.timezone)),
              _component("Microsoft-Windows-Deployment", a.arch,
                         _E("RunSynchronous", *[_add("RunSynchronousCommand", _t("Order", i), _t("Path", c))
                                                for i, c in enumerate(commands, 1)])),
              pass_="specialize")


def _first_logon(a: Answer) -> list[str]:
    letters = " ".join(DRIVE_LETTERS)
    script = f"%d:\\{COMPLETION_DIR}\\{COMPLETION_SCRIPT}"
    return [marker_command("firstlogon"), *a.firstlogon_commands,
            f"cmd /c for %d in ({letters}) do if exist {script} call {script}",
            # when no drive held the script, say so where the watcher looks (when one did, the
            # machine is already powering off and this exits at once)
            f"cmd /c (for %d in ({letters}) do if exist {script} exit) & {COM1_SETUP} & "
            "echo IRONFORGE-WIN error=no-completion-script>COM1"]


def _oobe(a: Answer) -> _E:
    oobe = [_t("HideEULAPage", True), _t("HideOEMRegistrationScreen", True)]
    if not a.server and a.osinfo != "win7":
        oobe += [_t("HideOnlineAccountScreens", True), _t("HideWirelessSetupInOOBE", True),
                 _t("HideLocalAccountScreen", True)]
    oobe.append(_t("ProtectYourPC", 3))
    accounts = [_add("LocalAccount", _t("Name", u.name), _t("DisplayName", u.name),
                     _t("Group", "Administrators" if u.admin else "Users"), _password(u.password))
                for u in a.accounts]
    users = _E("UserAccounts", _password(a.admin_password, admin=True),
               _E("LocalAccounts", *accounts) if accounts else None)
    logon = _E("AutoLogon", _password(a.admin_password), _t("Enabled", True), _t("LogonCount", 1),
               _t("Username", "Administrator"))
    first = _E("FirstLogonCommands",
               *[_add("SynchronousCommand", _t("Order", i), _t("CommandLine", c),
                      _t("Description", f"ironforge step {i}"))
                 for i, c in enumerate(_first_logon(a), 1)])
    return _E("settings",
              _locale("Microsoft-Windows-International-Core", a, winpe=False),
              _component("Microsoft-Windows-Shell-Setup", a.arch, _E("OOBE", *oobe), users, logon, first,
                         _t("TimeZone", a.timezone)),
              pass_="oobeSystem")


def render(a: Answer) -> bytes:
    """The autounattend.xml bytes (UTF-8, CRLF): the same Answer always gives the same bytes."""
    if a.arch not in ("x86", "amd64"):
        raise ValueError(f"answer files are made for x86 or amd64, not {a.arch!r}")
    if a.firmware not in ("bios", "uefi"):
        raise ValueError(f"unknown firmware {a.firmware!r}")
    root = _E("unattend", _windows_pe(a), _specialize(a), _oobe(a), xmlns=_NS, xmlns__wcm=_WCM)
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           f"<!-- generated by ironforge for {escape(a.image_name).replace('--', '-')} ({a.arch}, {a.firmware}) -->"]
    root.render(out, 0)
    text = _NL.join(out) + _NL
    return text.encode("utf-8")
