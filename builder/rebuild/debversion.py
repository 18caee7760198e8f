"""Debian version ordering (Debian Policy 5.6.12, as dpkg implements it), so a package diff can
say "upgraded" or "downgraded" without a dpkg call per package."""

from __future__ import annotations


def _order(c: str) -> int:
    if c == "":
        return 0
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _at(s: str, i: int) -> str:
    return s[i] if i < len(s) else ""


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (_at(a, i) and not _at(a, i).isdigit()) or (_at(b, j) and not _at(b, j).isdigit()):
            ac, bc = _order(_at(a, i)), _order(_at(b, j))
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        while _at(a, i) == "0":
            i += 1
        while _at(b, j) == "0":
            j += 1
        first_diff = 0
        while _at(a, i).isdigit() and _at(b, j).isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if _at(a, i).isdigit():
            return 1
        if _at(b, j).isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(v: str) -> tuple[int, str, str]:
    epoch, _, rest = v.partition(":") if ":" in v else ("0", "", v)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    try:
        e = int(epoch)
    except ValueError:
        e = 0
    return e, upstream, revision


def compare(a: str, b: str) -> int:
    """<0, 0 or >0 as version ``a`` sorts before, equal to or after ``b``."""
    ea, ua, ra = _split(a.strip())
    eb, ub, rb = _split(b.strip())
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)
