"""Registry edits as data, applied to a hive with python3-hivex, compared before writing.

An edit says "this key (created with its parents if missing) holds these values". Applying it
reads the current value first and writes only what differs, and returns the changes made, so
injecting twice changes nothing the second time and every change can be exported as a .reg
file (builder.windows.regfile) and listed in the report.

Encodings follow Windows (and virt-v2v's regedit.ml): REG_SZ/EXPAND_SZ are UTF-16LE with a
two-byte NUL; REG_MULTI_SZ is each string NUL-terminated then one more NUL; DWORD is 4 bytes LE.
Key lookup is case-insensitive (hivex matches child names that way, as Windows does).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import WindowsImageError
from builder.host.tools import require_python_module

REG_NONE, REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD = 0, 1, 2, 3, 4
REG_MULTI_SZ, REG_QWORD = 7, 11
TYPE_NAMES = {REG_NONE: "REG_NONE", REG_SZ: "REG_SZ", REG_EXPAND_SZ: "REG_EXPAND_SZ",
              REG_BINARY: "REG_BINARY", REG_DWORD: "REG_DWORD", REG_MULTI_SZ: "REG_MULTI_SZ",
              REG_QWORD: "REG_QWORD"}

MAX_KEY_DEPTH = 64


def sz(s: str) -> bytes:
    return s.encode("utf-16-le") + b"\0\0"


def multi_sz(items: list[str] | tuple[str, ...]) -> bytes:
    return b"".join(sz(i) for i in items) + b"\0\0"


def dword(n: int) -> bytes:
    return struct.pack("<I", n)


def decode_sz(data: bytes) -> str:
    """A REG_SZ/EXPAND_SZ's text, tolerant of a missing or doubled NUL and odd lengths."""
    if len(data) % 2:
        data = data[:-1]
    return data.decode("utf-16-le", "replace").split("\0", 1)[0]


def decode_multi_sz(data: bytes) -> list[str]:
    if len(data) % 2:
        data = data[:-1]
    return [s for s in data.decode("utf-16-le", "replace").split("\0") if s]


def decode_dword(data: bytes) -> int | None:
    return struct.unpack("<I", data[:4])[0] if len(data) >= 4 else None


@dataclass(frozen=True)
class Value:
    name: str              # "" is the key's default value
    type: int
    data: bytes

    @staticmethod
    def sz(name: str, s: str) -> "Value":
        return Value(name, REG_SZ, sz(s))

    @staticmethod
    def expand_sz(name: str, s: str) -> "Value":
        return Value(name, REG_EXPAND_SZ, sz(s))

    @staticmethod
    def multi_sz(name: str, items: list[str]) -> "Value":
        return Value(name, REG_MULTI_SZ, multi_sz(items))

    @staticmethod
    def dword(name: str, n: int) -> "Value":
        return Value(name, REG_DWORD, dword(n))

    @staticmethod
    def binary(name: str, data: bytes) -> "Value":
        return Value(name, REG_BINARY, bytes(data))


@dataclass(frozen=True)
class KeyEdit:
    """Key ``path`` (below the hive root) exists and holds ``values``; ``why`` is for people."""

    hive: str              # "SYSTEM" or "SOFTWARE"
    path: tuple[str, ...]
    values: tuple[Value, ...] = ()
    why: str = ""


@dataclass(frozen=True)
class Change:
    hive: str
    path: tuple[str, ...]
    value: str | None      # None: the key itself was created
    old: tuple[int, bytes] | None
    new: tuple[int, bytes] | None
    why: str = ""

    def to_dict(self) -> dict:
        def show(tv):
            if tv is None:
                return None
            t, d = tv
            return {"type": TYPE_NAMES.get(t, str(t)), "value": render(t, d)}
        return {"hive": self.hive, "key": "\\".join(self.path), "value": self.value,
                "old": show(self.old), "new": show(self.new), "why": self.why}


def render(t: int, data: bytes):
    """A value as JSON-friendly data: text for strings, ints for DWORDs, hex otherwise."""
    if t in (REG_SZ, REG_EXPAND_SZ):
        return decode_sz(data)
    if t == REG_MULTI_SZ:
        return decode_multi_sz(data)
    if t == REG_DWORD and len(data) == 4:
        return decode_dword(data)
    return data.hex(" ")


class Hive:
    """One hive file opened with python3-hivex; malformed input becomes WindowsImageError."""

    def __init__(self, path: Path, name: str, write: bool = False):
        hivex = require_python_module("hivex", "python3-hivex")
        self.name = name
        self.path = path
        try:
            self.h = hivex.Hivex(str(path), write=write)
            self.h.root()
        except RuntimeError as exc:
            raise WindowsImageError(f"the {name} hive is not a readable registry hive ({exc})",
                                    hint="the disk may be damaged or not a Windows system disk; "
                                         "nothing was written") from None

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except RuntimeError as exc:
            raise WindowsImageError(f"the {self.name} hive is malformed or truncated ({exc})",
                                    hint="the disk may be damaged or not a Windows system disk; "
                                         "nothing was written") from None

    def _get_value(self, node: int, name: str) -> int | None:
        """The value handle named ``name`` (case-insensitive, "" = default) or None.

        python3-hivex raises RuntimeError("Success") for a missing value, indistinguishable from
        a read error, so the values are listed and compared here."""
        want = name.lower()
        for v in self._call(self.h.node_values, node):
            if self._call(self.h.value_key, v).lower() == want:
                return v
        return None

    def node(self, path: tuple[str, ...] | list[str]) -> int | None:
        n = self._call(self.h.root)
        for part in path:
            n = self._call(self.h.node_get_child, n, part)
            if not n:
                return None
        return n

    def value(self, path, name: str) -> tuple[int, bytes] | None:
        n = self.node(path)
        if n is None:
            return None
        v = self._get_value(n, name)
        if not v:
            return None
        t, data = self._call(self.h.value_value, v)
        return t, data

    def children(self, path) -> list[str]:
        n = self.node(path)
        if n is None:
            return []
        return [self._call(self.h.node_name, c) for c in self._call(self.h.node_children, n)]

    def values(self, path) -> dict[str, tuple[int, bytes]]:
        n = self.node(path)
        if n is None:
            return {}
        out = {}
        for v in self._call(self.h.node_values, n):
            out[self._call(self.h.value_key, v)] = self._call(self.h.value_value, v)
        return out

    def string(self, path, name: str) -> str | None:
        tv = self.value(path, name)
        if tv is None or tv[0] not in (REG_SZ, REG_EXPAND_SZ):
            return None
        return decode_sz(tv[1])

    def dword(self, path, name: str) -> int | None:
        tv = self.value(path, name)
        if tv is None or tv[0] != REG_DWORD:
            return None
        return decode_dword(tv[1])

    def apply(self, edits: list[KeyEdit]) -> list[Change]:
        """Make the hive hold ``edits``; returns what changed (nothing on a second run)."""
        changes: list[Change] = []
        for e in edits:
            if e.hive != self.name:
                continue
            if len(e.path) > MAX_KEY_DEPTH:
                raise ValueError(f"registry path too deep: {e.path}")
            n = self._call(self.h.root)
            for i, part in enumerate(e.path):
                child = self._call(self.h.node_get_child, n, part)
                if not child:
                    child = self._call(self.h.node_add_child, n, part)
                    changes.append(Change(self.name, e.path[:i + 1], None, None, None, e.why))
                n = child
            for v in e.values:
                cur = self._get_value(n, v.name)
                old = self._call(self.h.value_value, cur) if cur else None
                if old is not None and old[0] == v.type and old[1] == v.data:
                    continue
                self._call(self.h.node_set_value, n, {"key": v.name, "t": v.type, "value": v.data})
                changes.append(Change(self.name, e.path, v.name, old, (v.type, v.data), e.why))
        return changes

    def commit(self) -> None:
        self._call(self.h.commit, None)


@dataclass
class HiveSet:
    """The hives one injection reads and edits, by name."""

    hives: dict[str, Hive] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Hive:
        return self.hives[name]
