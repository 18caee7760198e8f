"""``ironforge rebuild``: recompute the upstream pins, build exactly the stages whose inputs
changed (the engine's cache keys decide), publish a new version and flip ``latest``, or say
"up to date" and publish nothing.

"Up to date" means: every stage's key, computed now (fresh InRelease, tool versions, code,
recipe), equals the key the published ``latest`` was built with. Then nothing runs at all, not
even cache hits; the cost is computing the keys (one InRelease download per suite).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from builder.cache.lease import Lease
from builder.engine import Engine, Step
from builder.rebuild import changes as changesmod
from builder.rebuild import locks, versions
from builder.recipe import Recipe
from builder.stage import StageDef

log = logging.getLogger("ironforge.rebuild")


@dataclass
class Outcome:
    recipe: str
    status: str                    # "up-to-date" | "published" | "would-rebuild"
    folder: Path
    version: str | None = None     # the version now at latest (published or unchanged)
    previous: str | None = None
    pins: dict[str, Any] = field(default_factory=dict)      # what was checked: stage -> pins
    tools: dict[str, Any] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)        # name, key, hit/ran, reason
    changed: dict[str, Any] = field(default_factory=dict)
    packages: dict[str, Any] | None = None
    pruned: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "status": self.status, "folder": str(self.folder),
                "version": self.version, "previous": self.previous, "pins": self.pins,
                "tools": self.tools, "stages": self.stages, "changed": self.changed,
                "packages": self.packages, "pruned": self.pruned}


def _checked(materials: list[dict]) -> tuple[dict[str, Any], dict[str, Any]]:
    pins = {m["stage"]: m["pins"] for m in materials if m.get("pins")}
    tools: dict[str, Any] = {}
    for m in materials:
        tools.update(m.get("tools") or {})
    return pins, tools


def rebuild_one(engine: Engine, recipe: Recipe, stages: list[StageDef], output_root: Path, *,
                keep: int | None = None, dry_run: bool = False, wait: bool = True,
                pause: Callable[[str], None] | None = None,
                report: Callable[[Path, Any, dict], None] | None = None) -> Outcome:
    """Rebuild one recipe into ``output_root/<name>/`` (see the module docstring). Holds the
    folder's rebuild lock throughout (OutputBusy without ``wait``) and its publish lock while
    publishing. A failure raises and leaves ``latest`` where it was. ``report``: see
    versions.publish_version (writes e.g. an HTML report into the new version)."""
    folder = output_root / recipe.name
    with locks.hold(output_root, recipe.name, "rebuild", wait=wait):
        prev = versions.current(folder)
        steps: list[Step] = engine.plan(recipe, stages)
        pins, tools = _checked([s.material for s in steps])
        out = Outcome(recipe.name, "up-to-date", folder, prev.version if prev else None,
                      prev.version if prev else None, pins, tools)
        if prev is not None and [s.key for s in steps] == prev.stage_keys:
            return out
        if dry_run:
            out.status = "would-rebuild"
            out.stages = [{"name": s.stage.name, "key": s.key, "hit": s.hit,
                           "reason": "cached" if s.hit else s.reason} for s in steps]
            out.changed = changesmod.inputs_changed(versions.previous_inputs(prev, engine.store),
                                                    {s.stage.name: s.material for s in steps})
            return out
        with Lease(engine.store) as lease:    # the stages stay pinned against gc until published
            result = engine.run(recipe, stages, lease=lease)
            if prev is not None and [s.key for s in result.steps] == prev.stage_keys:
                return out                      # upstream went back while we ran: nothing new
            verification = result.artifacts["verify"].data if "verify" in result.artifacts else None
            with locks.hold(output_root, recipe.name, "publish"):
                pub = versions.publish_version(result, output_root, engine.accel, verification,
                                               store=engine.store, keep=keep, pause=pause,
                                               report=report)
        out.status, out.version, out.previous = "published", pub.version, pub.previous
        out.pins, out.tools = _checked(list(pub.changes["inputs"].values()))
        out.stages = [{"name": s.name, "key": s.key, "hit": s.hit, "reason": s.reason} for s in result.steps]
        out.changed, out.packages, out.pruned = pub.changes["changed"], pub.changes["packages"], pub.pruned
        return out


# -- words for people ----------------------------------------------------------------------------

def _pin_words(pins: dict[str, Any]) -> list[str]:
    words = []
    for stage, p in pins.items():
        flat = changesmod._flat(p)
        if "inrelease_sha256" in flat:
            words.append(f"{stage}: {flat.get('suite', 'suite')} InRelease {flat['inrelease_sha256'][:12]}…"
                         + (f" ({flat['release_date']})" if flat.get("release_date") else ""))
        else:
            words.append(f"{stage}: " + ", ".join(f"{k}={changesmod._short(v)}" for k, v in flat.items()))
    return words


def render(o: Outcome) -> list[str]:
    """Lines for a terminal."""
    lines: list[str] = []
    if o.status == "up-to-date":
        lines.append(f"{o.recipe}: up to date ({o.version or 'unversioned output'})")
        lines += [f"  checked {w}" for w in _pin_words(o.pins)]
        if o.tools:
            lines.append("  checked tools: " + ", ".join(f"{k} {v}" for k, v in sorted(o.tools.items())))
        return lines
    if o.status == "would-rebuild":
        lines.append(f"{o.recipe}: would rebuild (latest: {o.previous or 'none'})")
    else:
        lines.append(f"{o.recipe}: published {o.folder / o.version} (previous: {o.previous or 'none'})")
    for s in o.stages:
        lines.append(f"  {s['name']:<10} {'cached ' if s['hit'] else 'rebuilt' if o.status == 'published' else 'run    '}"
                     f"  {'' if s['hit'] else s['reason']}")
    ch = o.changed
    for u in ch.get("upstream", []):
        lines.append(f"  upstream {u['stage']}.{u['pin']}: {changesmod._short(u['old'])} -> {changesmod._short(u['new'])}")
    for r in ch.get("recipe", []):
        lines.append(f"  recipe {r['key']} changed")
    for t in ch.get("tools", []):
        lines.append(f"  tool {t['tool']}: {t['old']} -> {t['new']}")
    for c in ch.get("code", []):
        lines.append(f"  code {c['file']} ({', '.join(c['stages'])})")
    for s in ch.get("stage_versions", []):
        lines.append(f"  stage version {s['stage']}: {s['old']} -> {s['new']}")
    pk = o.packages
    if pk:
        lines.append(f"  packages: {len(pk['upgraded'])} upgraded, {len(pk['downgraded'])} downgraded, "
                     f"{len(pk['added'])} added, {len(pk['removed'])} removed")
    if o.pruned:
        lines.append(f"  pruned: {', '.join(o.pruned)}")
    return lines
