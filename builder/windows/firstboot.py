"""First boot: install the staged drivers from an allow-list, a bounded number of times.

Mechanism: ``HKLM\\SYSTEM\\Setup`` ``CmdLine`` + ``SetupType=2``. Winlogon runs ``CmdLine`` as
LocalSystem early in boot, before the logon screen, whenever ``SetupType`` is non-zero, and
waits for it; with 2 it continues booting afterwards. It needs no binary of ours (virt-v2v needs
rhsrvany.exe, which Debian does not ship), no logon (RunOnce does; forklift#984 calls it
unreliable), and no binary task or policy blobs: two registry values and one .cmd file. The
script clears both values itself when done or when it gives up, so it runs on at most
``retry_cap`` boots (virt-v2v HEAD retries forever: its reboot loops are pain point 3).

Rejected: a service with ImagePath=cmd.exe (the service manager kills a process that never
reports SERVICE_RUNNING after 30 s, and logs an error each boot); a scheduled task (offline it
needs the binary TaskCache blobs, whose format changes between versions); a Group Policy startup
script (gpt.ini versions and client-side-extension GUIDs, and GPO is a known 0x7B source).

Never installed over a pending Setup: a sysprepped image has ``SetupType=1`` and
``CmdLine=oobe\\windeploy.exe``; replacing that would break OOBE. Then the report says so and
Plug and Play still finds the drivers through DevicePath.

Per-INF status lands in ``%SystemRoot%\\Setup\\ironforge\\status\\<inf>.txt`` (``installed
exit=N boot=B`` or ``failed exit=N boot=B``), a log in ``firstboot.log``, and ``complete`` or
``gave-up`` at the end, for the verify probe to read.
"""

from __future__ import annotations

from builder.windows.hive_edits import KeyEdit, Value

# INFs installed at first boot. Left out on purpose: pvpanic, qemufwcfg, fwcfg, smbus (self-signed
# or refused on some versions: reboot loops, spec §7.3), qemupciserial, the display drivers.
ALLOW_LIST = ("viostor.inf", "vioscsi.inf", "netkvm.inf", "balloon.inf", "vioser.inf",
              "viorng.inf", "vioinput.inf")
RETRY_CAP = 3
DIR = ("Setup", "ironforge")                         # below %SystemRoot%
SCRIPT = "firstboot.cmd"
CMDLINE = r"cmd.exe /c %SystemRoot%\Setup\ironforge\firstboot.cmd"
MECHANISM = r"HKLM\SYSTEM\Setup CmdLine with SetupType=2 (run by Winlogon before logon)"


def script(infs: list[str], retry_cap: int = RETRY_CAP) -> bytes:
    """The .cmd file, CRLF line endings, pure cmd.exe + pnputil + reg."""
    lines = [
        "@echo off",
        "rem ironforge first boot: install the staged virtio drivers (allow-list), on at most",
        f"rem {retry_cap} boots; then clear HKLM\\SYSTEM\\Setup CmdLine/SetupType so it never runs again.",
        "setlocal EnableExtensions",
        r'set "HERE=%SystemRoot%\Setup\ironforge"',
        r'set "DRV=%SystemRoot%\Drivers\VirtIO"',
        r'set "LOG=%HERE%\firstboot.log"',
        f"set MAX={retry_cap}",
        'if not exist "%HERE%\\status" mkdir "%HERE%\\status"',
        "set N=0",
        'if exist "%HERE%\\attempts" set /p N=<"%HERE%\\attempts"',
        "set /a N=N+1",
        '>"%HERE%\\attempts" echo %N%',
        '>>"%LOG%" echo boot %N% of %MAX%: %DATE% %TIME%',
        "set LEFT=0",
        f"for %%I in ({' '.join(infs)}) do call :one %%I",
        "if %LEFT%==0 goto done",
        "if %N% GEQ %MAX% goto giveup",
        '>>"%LOG%" echo %LEFT% driver(s) left; trying again at the next boot',
        "exit /b 0",
        ":giveup",
        '>>"%LOG%" echo giving up after %N% boots with %LEFT% driver(s) not installed',
        '>"%HERE%\\gave-up" echo %LEFT%',
        "goto clear",
        ":done",
        '>"%HERE%\\complete" echo %N%',
        ":clear",
        'reg add "HKLM\\SYSTEM\\Setup" /v SetupType /t REG_DWORD /d 0 /f >>"%LOG%" 2>&1',
        'reg add "HKLM\\SYSTEM\\Setup" /v CmdLine /t REG_SZ /d "" /f >>"%LOG%" 2>&1',
        "exit /b 0",
        "",
        ":one",
        'if exist "%HERE%\\status\\%1.ok" goto :eof',
        'if not exist "%DRV%\\%1" (>"%HERE%\\status\\%1.txt" echo missing & goto :eof)',
        '"%SystemRoot%\\System32\\pnputil.exe" -i -a "%DRV%\\%1" >>"%LOG%" 2>&1',
        "set RC=%ERRORLEVEL%",
        'if "%RC%"=="0" goto ok',
        'if "%RC%"=="259" goto ok',
        'if "%RC%"=="3010" goto ok',
        '>"%HERE%\\status\\%1.txt" echo failed exit=%RC% boot=%N%',
        "set /a LEFT=LEFT+1",
        "goto :eof",
        ":ok",
        '>"%HERE%\\status\\%1.txt" echo installed exit=%RC% boot=%N%',
        '>"%HERE%\\status\\%1.ok" echo %RC%',
        "goto :eof",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def setup_edit() -> KeyEdit:
    return KeyEdit("SYSTEM", ("Setup",), (Value.sz("CmdLine", CMDLINE), Value.dword("SetupType", 2)),
                   why="run the first-boot driver installation once Windows starts")


def setup_pending(cmdline: str | None, setup_type: int | None) -> bool:
    """Another Setup (sysprep/OOBE) is already queued: do not take its place."""
    return bool(setup_type) and (cmdline or "").strip().lower() != CMDLINE.lower()
