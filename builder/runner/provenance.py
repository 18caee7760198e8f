"""What a published image's manifest says about it, for verification reports: its digest and the
cache keys that made it. Read only from the manifest.json our publish step wrote beside it."""

from __future__ import annotations

import json
from pathlib import Path

_MAX_MANIFEST = 4 << 20


def beside(image: Path) -> dict:
    """``{"image_sha256": …, "cache_keys": {stage: key}}`` from ``image``'s folder's manifest.json
    when that manifest lists ``image`` under one of its formats; {} otherwise (not ours, unreadable)."""
    path = Path(image).parent / "manifest.json"
    try:
        if path.stat().st_size > _MAX_MANIFEST:
            return {}
        manifest = json.loads(path.read_text())
        formats = manifest.get("image") or {}
        entry = next((d for d in formats.values() if isinstance(d, dict) and d.get("file") == Path(image).name),
                     None)
        if entry is None:
            return {}
        keys = {s["name"]: s["key"] for s in manifest.get("stages") or []
                if isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("key"), str)}
        sha = entry.get("sha256")
        return {"image_sha256": sha if isinstance(sha, str) else None, "cache_keys": keys}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}
