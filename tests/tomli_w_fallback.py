"""A tiny TOML writer for property tests (tomllib reads only); enough for generated documents."""

from __future__ import annotations

import json
import re

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v) -> str:
    if v is None:
        raise TypeError("TOML has no null")
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and v != v:
            raise ValueError("nan")
        return repr(v) if not isinstance(v, float) or v not in (float("inf"), float("-inf")) else (
            "inf" if v > 0 else "-inf")
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v).__name__)


def dumps(doc: dict) -> str:
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in doc.items())
