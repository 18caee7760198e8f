"""The Windows boot probe: what verification puts into a throw-away overlay of a Windows disk.

Nothing third-party: a ``.cmd`` file, a PowerShell script (Windows PowerShell ships with every
version we build, 2.0 on Windows 7 included) and two registry values.

**Trigger: ``HKLM\\SYSTEM\\Setup`` ``CmdLine`` + ``SetupType`` = 2.** At boot, with SetupType 2,
Windows runs CmdLine as SYSTEM before anyone logs on, then goes on booting; it is what Setup
itself uses between its passes. Chosen over the alternatives because it is one offline edit of
two values in the SYSTEM hive, needs no logon (unlike Run/RunOnce or FirstLogonCommands), no
service wrapper (a plain command as a service is killed by the service manager after 30 s;
virt-v2v ships rhsrvany for that), and no Group Policy state (a startup script needs
``scripts.ini``, ``gpt.ini`` version bumps and the GP cache to agree). It runs on every boot
while set, which only ever happens in the overlay: the published image is its read-only backing
file and the overlay is deleted after the run. The same two values queue the first-boot driver
installation of an injected image (builder.windows.firstboot): a command queued there is run by
the probe first, so verification sees the drivers it installs; a generalized image (OOBE queued)
is refused rather than booted into OOBE.

The probe prints one line to COM1 and powers off::

    IRONFORGE-READY nonce=… src=smbios arch=AMD64 build=19045 storage=viostor net=netkvm probe=1 uptime=…

- nonce: from the SMBIOS type 11 OEM string ``ironforge.nonce=…`` QEMU sets per boot, read from
  the raw SMBIOS table WMI exposes (``root\\wmi`` ``MSSmBios_RawSMBiosTables``);
- storage / net: the virtio drivers (viostor, vioscsi / netkvm) *bound* to a started device,
  from the volatile ``Services\\<driver>\\Enum`` key Plug and Play keeps for each started device
  (present from Windows 2000 to 11; no PowerShell PnP module needed). The NIC is bound by Plug and
  Play in parallel with the probe, so the probe waits for it, bounded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from builder.errors import VerifyError

log = logging.getLogger("ironforge.verify")

VERSION = 1
PROBE_DIR = "/ironforge"                 # C:\ironforge in the guest
CMD_NAME = "probe.cmd"
PS1_NAME = "probe.ps1"
CMDLINE = r'cmd.exe /c "%SystemDrive%\ironforge\probe.cmd"'
SETUP_TYPE = 2                           # run CmdLine, then continue the boot
STORAGE_DRIVERS = ("viostor", "vioscsi")
NET_DRIVERS = ("netkvm",)
REG_SZ, REG_DWORD = 1, 4

_PS1 = r"""# ironforge boot probe (throw-away verification overlay only)
$ErrorActionPreference = 'SilentlyContinue'
$deadline = (Get-Date).AddSeconds(@WAIT@)
function Bound([string]$svc) {
    $k = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey("SYSTEM\CurrentControlSet\Services\$svc\Enum")
    if ($k -eq $null) { return $false }
    $n = $k.GetValue('Count'); $k.Close()
    return ($n -ne $null -and [int]$n -ge 1)
}
function Join($items) { $s = (@($items) | Where-Object { $_ }) -join ','; if ($s) { $s } else { 'none' } }
$nonce = 'none'; $src = 'none'
do {
    try {
        $raw = (Get-WmiObject -Namespace root\wmi -Class MSSmBios_RawSMBiosTables).SMBiosData
        $text = [Text.Encoding]::ASCII.GetString([byte[]]$raw)
        if ($text -match 'ironforge\.nonce=([0-9A-Za-z]+)') { $nonce = $Matches[1]; $src = 'smbios' }
    } catch { }
    if ($nonce -ne 'none') { break }
    Start-Sleep -Seconds 2      # WMI may still be starting this early in the boot
} while ((Get-Date) -lt $deadline)
$arch = $env:PROCESSOR_ARCHITECTURE
if ($env:PROCESSOR_ARCHITEW6432) { $arch = $env:PROCESSOR_ARCHITEW6432 }
$build = [Microsoft.Win32.Registry]::GetValue('HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion', 'CurrentBuildNumber', 'unknown')
do {
    $storage = @(@STORAGE@) | Where-Object { Bound $_ }
    $net = @(@NET@) | Where-Object { Bound $_ }
    if ($net) { break }
    Start-Sleep -Seconds 2
} while ((Get-Date) -lt $deadline)
$uptime = [math]::Round([Environment]::TickCount / 1000.0, 1)
$line = "IRONFORGE-READY nonce=$nonce src=$src arch=$arch build=$build storage=$(Join $storage) net=$(Join $net) probe=@VERSION@ uptime=$uptime"
[IO.File]::WriteAllText("$env:SystemDrive\ironforge\marker.txt", $line + "`r`n", [Text.Encoding]::ASCII)
"""

_CMD = r"""@echo off
rem ironforge boot probe (throw-away verification overlay only): run by HKLM\SYSTEM\Setup CmdLine
if "%SystemDrive%"=="" set SystemDrive=C:
set D=%SystemDrive%\ironforge
del /q "%D%\marker.txt" >nul 2>&1
@PREVIOUS@"%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe" -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "%D%\probe.ps1" >"%D%\probe.log" 2>&1
if not exist "%D%\marker.txt" (echo IRONFORGE-READY nonce=none src=none arch=%PROCESSOR_ARCHITECTURE% build=unknown storage=none net=none probe=@VERSION@ error=powershell)>"%D%\marker.txt"
mode COM1: BAUD=115200 PARITY=N DATA=8 STOP=1 >nul 2>&1
echo.>COM1
type "%D%\marker.txt" >COM1
"%SystemRoot%\System32\shutdown.exe" /s /t 0 /f
"""


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii")


def ps1(wait_seconds: int = 180) -> bytes:
    """The PowerShell part; ``wait_seconds`` bounds its waits (WMI, the NIC binding)."""
    quote = lambda names: ",".join(f"'{n}'" for n in names)  # noqa: E731
    return _crlf(_PS1.replace("@WAIT@", str(int(wait_seconds))).replace("@VERSION@", str(VERSION))
                 .replace("@STORAGE@", quote(STORAGE_DRIVERS)).replace("@NET@", quote(NET_DRIVERS)))


def cmd(previous: str | None = None) -> bytes:
    """The .cmd file; ``previous``: the CmdLine that was queued before the probe (the first-boot
    driver installation of builder.windows.firstboot), run first so the probe sees its result."""
    chained = ""
    if previous:
        chained = ("rem what HKLM\\SYSTEM\\Setup CmdLine ran before the probe took its place\n"
                   f"{previous}\n")
    return _crlf(_CMD.replace("@VERSION@", str(VERSION)).replace("@PREVIOUS@", chained))


class PendingSetup(VerifyError):
    """The image has another Setup queued (sysprep/OOBE); booting it would run that instead."""


def previous_command(cmdline: str | None, setup_type: int | None) -> str | None:
    """What the probe must run before itself, from the hive's Setup values; raises PendingSetup
    for a generalized (sysprepped) image, whose queued OOBE the probe must not replace or run."""
    line = " ".join((cmdline or "").split())          # one line: it goes into a .cmd file
    if not setup_type or not line or line == CMDLINE:
        return None
    if setup_type != SETUP_TYPE or "windeploy" in line.lower() or "oobe" in line.lower():
        raise PendingSetup(f"the image has Windows Setup queued (SetupType={setup_type}, CmdLine={line[:120]!r}): "
                           "it is generalized (sysprep), and its first boot runs OOBE",
                           hint="verify the image before generalizing it, or boot it once to finish OOBE")
    return line[:1024]


def reg_sz(text: str) -> bytes:
    return (text + "\0").encode("utf-16-le")


@dataclass(frozen=True)
class WindowsFacts:
    arch: str                # from libguestfs inspection (cmd.exe's PE header): x86_64 | i386
    build: str | None        # SOFTWARE CurrentBuildNumber
    product: str
    systemroot: str
    firmware: str            # uefi (GPT) | bios (MBR)


def _hive_child(g, node: int, name: str) -> int | None:
    # hivex child lookup is case-insensitive, as Windows' own
    return g.hivex_node_get_child(node, name) or None


def _software_build(g, systemroot: str) -> str | None:
    path = g.case_sensitive_path(f"{systemroot}/System32/config/SOFTWARE")
    g.hivex_open(path, write=False)
    try:
        node = g.hivex_root()
        for part in ("Microsoft", "Windows NT", "CurrentVersion"):
            node = _hive_child(g, node, part)
            if node is None:
                return None
        v = g.hivex_node_get_value(node, "CurrentBuildNumber")
        if not v:
            return None
        return g.hivex_value_value(v).decode("utf-16-le", "replace").rstrip("\0") or None
    finally:
        g.hivex_close()


def _value(g, node: int, name: str) -> tuple[int, bytes] | None:
    v = g.hivex_node_get_value(node, name)
    return (g.hivex_value_type(v), g.hivex_value_value(v)) if v else None


def set_trigger(g, systemroot: str) -> str | None:
    """HKLM\\SYSTEM\\Setup: CmdLine = the probe, SetupType = 2 (in the overlay's SYSTEM hive).
    Returns the command queued there before (for the probe to run first)."""
    path = g.case_sensitive_path(f"{systemroot}/System32/config/SYSTEM")
    g.hivex_open(path, write=True)
    try:
        root = g.hivex_root()
        setup = _hive_child(g, root, "Setup") or g.hivex_node_add_child(root, "Setup")
        cmdline, setup_type = _value(g, setup, "CmdLine"), _value(g, setup, "SetupType")
        previous = previous_command(
            cmdline[1].decode("utf-16-le", "replace").split("\0")[0] if cmdline and cmdline[0] in (1, 2) else None,
            int.from_bytes(setup_type[1][:4], "little") if setup_type and len(setup_type[1]) >= 4 else None)
        g.hivex_node_set_value(setup, "CmdLine", REG_SZ, reg_sz(CMDLINE))
        g.hivex_node_set_value(setup, "SetupType", REG_DWORD, SETUP_TYPE.to_bytes(4, "little"))
        g.hivex_commit(None)
        return previous
    finally:
        g.hivex_close()


def inject(g, root: str, *, wait_seconds: int = 180, what: str = "verify") -> WindowsFacts:
    """Inside an open libguestfs session on the overlay: put the probe and its trigger in place;
    return what the disk says about itself (for the checks)."""
    try:
        g.mount(root, "/")
    except Exception as exc:  # noqa: BLE001 - ntfs-3g's reasons are the useful part
        text = str(exc)
        hint = ("boot Windows and shut it down fully (shutdown /s /t 0), or turn off Fast Startup"
                if "hibernat" in text.lower() or "unclean" in text.lower() else None)
        raise VerifyError(f"{what}: the Windows system volume cannot be mounted for writing: {text}",
                          hint=hint) from None
    systemroot = g.inspect_get_windows_systemroot(root)
    build = _software_build(g, systemroot)
    previous = set_trigger(g, systemroot)
    g.mkdir_p(PROBE_DIR)
    g.write(f"{PROBE_DIR}/{PS1_NAME}", ps1(wait_seconds))
    g.write(f"{PROBE_DIR}/{CMD_NAME}", cmd(previous))
    g.sync()
    g.umount_all()
    # Windows boots from GPT only under UEFI and from MBR only under BIOS
    firmware = "bios"
    if not g.is_whole_device(root):
        try:
            firmware = "uefi" if g.part_get_parttype(g.part_to_dev(root)) == "gpt" else "bios"
        except Exception:  # noqa: BLE001 - not a partition (an LV…): keep the BIOS guess
            pass
    return WindowsFacts(arch=g.inspect_get_arch(root), build=build,
                        product=g.inspect_get_product_name(root), systemroot=systemroot, firmware=firmware)
