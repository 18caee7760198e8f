"""Registry changes as a .reg file (Windows Registry Editor 5.00), for people to read.

Offline there is no CurrentControlSet: paths name the real ControlSetNNN under
HKEY_LOCAL_MACHINE\\SYSTEM, exactly as the hive was edited. Importing the file with regedit on
the running guest would reproduce the edits (same format as hivexregedit --export).
"""

from __future__ import annotations

from builder.windows.hive_edits import (REG_DWORD, REG_SZ, Change, decode_sz)

HEADER = "Windows Registry Editor Version 5.00"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hex_lines(prefix: str, data: bytes) -> str:
    """hex(N):aa,bb,… wrapped at ~80 columns with backslash continuations, like regedit."""
    parts = [f"{b:02x}" for b in data]
    lines, cur = [], prefix
    for i, p in enumerate(parts):
        piece = p + ("," if i < len(parts) - 1 else "")
        if len(cur) + len(piece) > 77:
            lines.append(cur + "\\")
            cur = "  "
        cur += piece
    lines.append(cur)
    return "\n".join(lines)


def value_line(name: str, t: int, data: bytes) -> str:
    left = "@" if name == "" else _quote(name)
    if t == REG_SZ and (data.endswith(b"\0\0") and "\0" not in decode_sz(data)):
        return f"{left}={_quote(decode_sz(data))}"
    if t == REG_DWORD and len(data) == 4:
        return f"{left}=dword:{int.from_bytes(data, 'little'):08x}"
    prefix = f"{left}=hex:" if t == 3 else f"{left}=hex({t:x}):"
    return _hex_lines(prefix, data)


def export(changes: list[Change]) -> str:
    """The changes as .reg text (CRLF, as regedit writes), keys in the order first touched."""
    order: list[tuple[str, tuple[str, ...]]] = []
    values: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for c in changes:
        k = (c.hive, c.path)
        if k not in values:
            order.append(k)
            values[k] = []
        if c.value is not None and c.new is not None:
            values[k].append(value_line(c.value, *c.new))
    out = [HEADER, ""]
    for hive, path in order:
        out.append("[" + "\\".join(("HKEY_LOCAL_MACHINE", hive) + path) + "]")
        out.extend(values[(hive, path)])
        out.append("")
    return "\r\n".join(out) + "\r\n"
