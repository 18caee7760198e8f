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

REG_SZ, REG_DWORD = 1, 4


def _cell(p: bytes) -> bytes:
    n = (len(p) + 11) & ~7
    return struct.pack("<i", -n) + p + b"\0" * (n - 4 - len(p))


def empty_hive(root: bytes = b"ROOT") -> bytes:
    """A valid regf file with one root key (the generator in specs/windows.md §5)."""
    sid = struct.pack("<BB6sII", 1, 2, b"\0" * 5 + b"\x05", 32, 544)
    sd = struct.pack("<BBHIIII", 1, 0, 0x8000, 20, 20 + len(sid), 0, 0) + sid + sid
    sk_off = 0x20 + len(_cell(b"\0" * (0x4C + len(root))))
    nk = struct.pack("<2sHQ15IHH", b"nk", 0x2C, 0, 0, 0xFFFFFFFF, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF,
                     sk_off, 0xFFFFFFFF, 0, 0, 0, 0, 0, len(root), 0) + root
    sk = struct.pack("<2sHIIII", b"sk", 0, sk_off, sk_off, 1, len(sd)) + sd
    cells = _cell(nk) + _cell(sk)
    free = 0x1000 - 0x20 - len(cells)
    hbin = struct.pack("<4sII", b"hbin", 0, 0x1000) + b"\0" * 20 + cells + struct.pack("<i", free) + b"\0" * (free - 4)
    hdr = bytearray(0x1000)
    struct.pack_into("<4sIIQIIIIIII", hdr, 0, b"regf", 1, 1, 0, 1, 3, 0, 1, 0x20, 0x1000, 1)
    cs = 0
    for i in range(0, 0x1FC, 4):
        cs ^= struct.unpack_from("<I", hdr, i)[0]
    struct.pack_into("<I", hdr, 0x1FC, cs)
    return bytes(hdr) + hbin


def sz(text: str) -> tuple[int, bytes]:
    return REG_SZ, (text + "\0").encode("utf-16-le")


def dword(n: int) -> tuple[int, bytes]:
    return REG_DWORD, struct.pack("<I", n)


def make_hive(path: Path, keys: dict[str, dict[str, tuple[int, bytes]]]) -> Path:
    import hivex

    path.write_bytes(empty_hive())
    h = hivex.Hivex(str(path), write=True)
    for key, values in keys.items():
        node = h.root()
        for part in key.split("\\"):
            node = h.node_get_child(node, part) or h.node_add_child(node, part)
        for name, (t, value) in values.items():
            h.node_set_value(node, {"key": name, "t": t, "value": value})
    h.commit(str(path))
    return path


def stub_cmd_exe(arch: str) -> bytes:
    machine, magic = {"x86_64": (0x8664, 0x20B), "i686": (0x14C, 0x10B)}[arch]
    mz = bytearray(0x80)
    mz[0:2] = b"MZ"
    struct.pack_into("<I", mz, 0x3C, 0x80)
    coff = struct.pack("<4sHHIIIHH", b"PE\0\0", machine, 0, 0, 0, 0, 0xF0 if magic == 0x20B else 0xE0, 0x22)
    opt = bytearray(0xF0 if magic == 0x20B else 0xE0)
    struct.pack_into("<H", opt, 0, magic)
    struct.pack_into("<H", opt, 0x44, 3)      # subsystem: Windows console
    return bytes(mz) + coff + bytes(opt) + b"\0" * 512


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
