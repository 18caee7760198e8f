"""The one line a booted guest prints to prove it is up, and its parser.

``IRONFORGE-READY nonce=… arch=… kernel=… root=… virtio=a,b state=… failed=u1,u2 uptime=…``

Values never contain spaces (the probe replaces them); unknown keys are kept, so a newer probe can
report more without breaking an older parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TAG = "IRONFORGE-READY"
_MARKER = re.compile(re.escape(TAG) + r"((?:[ \t]+[A-Za-z_][\w-]*=\S*)+)")
_PAIR = re.compile(r"([A-Za-z_][\w-]*)=(\S*)")


@dataclass(frozen=True)
class Marker:
    nonce: str
    fields: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)

    def list(self, key: str) -> list[str]:
        v = self.fields.get(key, "")
        return [x for x in v.split(",") if x and x != "none"]

    @property
    def uptime(self) -> float | None:
        try:
            return float(self.fields["uptime"])
        except (KeyError, ValueError):
            return None


def parse_marker(line: str) -> Marker | None:
    """The marker in ``line`` (anywhere in it: kernel messages may precede it), or None."""
    m = _MARKER.search(line.replace("\r", ""))
    if not m:
        return None
    fields = dict(_PAIR.findall(m.group(1)))
    if "nonce" not in fields:
        return None
    return Marker(nonce=fields["nonce"], fields=fields)


def format_marker(nonce: str, **fields: str) -> str:
    """The line a probe prints (used by tests and by the tiny test guest)."""
    parts = [f"nonce={nonce}"] + [f"{k}={str(v).replace(' ', '_') or 'none'}" for k, v in fields.items()]
    return f"{TAG} " + " ".join(parts)
