"""Memory quantities with their units, to MiB.

OVF ``AllocationUnits`` follows DMTF DSP0004 programmatic units ("byte * 2^20", "byte*1024*1024",
"MegaBytes", "KB"…); virt-v2v ignores it and assumes MiB. libvirt uses ``unit=`` (KiB default).
"""

from __future__ import annotations

import re

_NAMED = {"b": 1, "byte": 1, "bytes": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "kilobytes": 1 << 10,
          "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "megabytes": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
          "gib": 1 << 30, "gigabytes": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}


def unit_bytes(units: str) -> int | None:
    """Bytes per unit, or None when the unit is not understood."""
    u = units.strip().lower().replace(" ", "")
    if u in _NAMED:
        return _NAMED[u]
    m = re.fullmatch(r"(?:byte|bytes|b)((?:\*(?:\d+\^\d+|\d+))*)", u)
    if not m:
        return None
    n = 1
    for factor in filter(None, m.group(1).split("*")):
        if "^" in factor:
            base, exp = factor.split("^")
            if int(exp) > 60:
                return None
            n *= int(base) ** int(exp)
        else:
            n *= int(factor)
    return n


def to_mib(quantity: int, units: str | None, default_unit: str = "MiB") -> int | None:
    per = unit_bytes(units or default_unit)
    if per is None:
        return None
    return max(1, (quantity * per) >> 20)
