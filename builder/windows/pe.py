"""The machine type of a PE executable, from its header alone (bounded, no external tool).

libguestfs' ``file_architecture`` runs ``file`` in the appliance; we only need two bytes of a
header, so we read the first few KiB of ``System32\\cmd.exe`` and parse MZ → e_lfanew → PE.
"""

from __future__ import annotations

import struct

from builder import arch as archmod
from builder.errors import WindowsImageError

HEADER_BYTES = 4096            # e_lfanew of real cmd.exe is < 0x200
MACHINES = {0x014C: archmod.I686, 0x8664: archmod.X86_64}
OTHER_MACHINES = {0xAA64: "ARM64", 0x01C4: "ARMv7", 0x0200: "Itanium"}
MAGIC = {0x10B: "PE32", 0x20B: "PE32+"}


def machine_arch(header: bytes, what: str = "cmd.exe") -> str:
    """'i686' or 'x86_64' for a PE header; WindowsImageError for anything else."""
    def bad(why: str) -> WindowsImageError:
        return WindowsImageError(f"{what}: {why}", hint="this does not look like an x86 Windows "
                                 "system disk; nothing was written")
    if len(header) < 0x40 or header[:2] != b"MZ":
        raise bad("not a PE executable (no MZ header)")
    (lfanew,) = struct.unpack_from("<I", header, 0x3C)
    if lfanew < 0x40 or lfanew + 26 > len(header):
        raise bad(f"PE header offset {lfanew:#x} is outside the first {len(header)} bytes")
    if header[lfanew:lfanew + 4] != b"PE\0\0":
        raise bad("no PE signature at e_lfanew")
    (machine,) = struct.unpack_from("<H", header, lfanew + 4)
    (magic,) = struct.unpack_from("<H", header, lfanew + 24)
    if machine in OTHER_MACHINES:
        raise bad(f"built for {OTHER_MACHINES[machine]}; ironforge handles x86 and amd64 Windows")
    if machine not in MACHINES:
        raise bad(f"unknown PE machine type {machine:#06x}")
    want = "PE32+" if MACHINES[machine] == archmod.X86_64 else "PE32"
    if MAGIC.get(magic) != want:
        raise bad(f"machine {machine:#06x} with optional-header magic {magic:#x} (expected {want})")
    return MACHINES[machine]
