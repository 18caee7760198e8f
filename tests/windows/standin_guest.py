"""A STAND-IN Windows system disk for the install/verify tests (no Windows here): NTFS made by
libguestfs, SYSTEM and SOFTWARE hives generated empty and filled with hivex, a stub PE
``cmd.exe`` of the right machine type (what libguestfs reads the arch from), and stand-in Setup
logs in the Panther directories. It does not boot.

A local fixture until wininject's ``tests/windows/phony.py`` lands on this branch; the lead may
switch the tests to ``make_phony_windows`` (the hives hold the same kind of facts).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from builder.host.accel import Accel
from builder.host.guestfs_session import Drive, session
from windows.phony import make_hive, stub_cmd_exe  # the one hive and PE generator for tests

REG_SZ, REG_DWORD = 1, 4


def sz(text: str) -> tuple[int, bytes]:
    return REG_SZ, (text + "\0").encode("utf-16-le")


def dword(n: int) -> tuple[int, bytes]:
    return REG_DWORD, struct.pack("<I", n)


SETUPERR = "2026-11-29 03:00:00, Error      [0x060435] IBS    stand-in: could not find driver for disk 0\r\n"


def make_standin_windows(path: Path, accel: Accel, *, build: str = "19045", arch: str = "x86_64",
                         firmware: str = "bios", workdir: Path | None = None,
                         setup: tuple[str, int] = ("", 0)) -> Path:
    """Write the stand-in disk (qcow2) at ``path``: one libguestfs launch. ``setup``: the
    HKLM\\SYSTEM\\Setup (CmdLine, SetupType) it carries."""
    work = workdir or path.parent
    system = make_hive(work / "SYSTEM", {
        "Select": {"Current": dword(1), "Default": dword(1)},
        "ControlSet001\\Control\\ComputerName\\ComputerName": {"ComputerName": sz("STANDIN")},
        "ControlSet001\\Services\\Tcpip\\Parameters": {"Hostname": sz("standin")},
        "MountedDevices": {},
        "Setup": {"SetupType": dword(setup[1]), "CmdLine": sz(setup[0])},
    })
    software = make_hive(work / "SOFTWARE", {
        "Microsoft\\Windows NT\\CurrentVersion": {
            "ProductName": sz("Windows 10 Pro"), "CurrentVersion": sz("6.3"),
            "CurrentMajorVersionNumber": dword(10), "CurrentMinorVersionNumber": dword(0),
            "CurrentBuildNumber": sz(build), "InstallationType": sz("Client"), "EditionID": sz("Professional")},
    })
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "256M"], check=True)
    with session([Drive(path, "qcow2", readonly=False)], accel, what="stand-in Windows disk") as g:
        if firmware == "uefi":
            g.part_init("/dev/sda", "gpt")
            g.part_add("/dev/sda", "p", 2048, 206847)
            g.part_add("/dev/sda", "p", 206848, -2048)
            g.mkfs("vfat", "/dev/sda1")
            root = "/dev/sda2"
        else:
            g.part_disk("/dev/sda", "mbr")
            root = "/dev/sda1"
        g.mkfs("ntfs", root)
        g.mount(root, "/")
        for d in ("/Windows/System32/config", "/Windows/System32/drivers", "/Windows/Panther",
                  "/$WINDOWS.~BT/Sources/Panther", "/Program Files"):
            g.mkdir_p(d)
        g.upload(str(system), "/Windows/System32/config/SYSTEM")
        g.upload(str(software), "/Windows/System32/config/SOFTWARE")
        g.write("/Windows/System32/cmd.exe", stub_cmd_exe(arch))
        g.write("/Windows/Panther/setupact.log", b"stand-in setupact (specialize)\r\n")
        g.write("/Windows/Panther/setuperr.log", SETUPERR.encode())
        g.write("/Windows/Panther/other.xml", b"<not-a-log/>")
        g.write("/$WINDOWS.~BT/Sources/Panther/setupact.log", b"stand-in setupact (windowsPE)\r\n")
        g.write("/$WINDOWS.~BT/Sources/Panther/diagerr.xml", b"<stand-in/>")
        g.umount_all()
    return path
