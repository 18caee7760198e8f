"""What changed between two published versions: the inputs of every stage's cache key (recipe
keys, upstream pins such as the suite's InRelease date and digest, media digests, tool versions,
stage versions and code) and the guest's packages. Written as ``changes.json`` (for machines)
and ``CHANGES.md`` (for people) into each version folder.

Inputs come from the stages' key material, so this says exactly what the cache saw; recipe
values that hold secret or private-file tokens are named, never shown (manifests publish no
digest of them, and neither does this).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builder.engine import _changed_paths
from builder.rebuild.debversion import compare

SHORT = 12


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _value_at(value: Any, read_key: str, path: str) -> Any:
    rest = path[len(read_key):].lstrip(".")
    for part in rest.split(".") if rest else []:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _shown(v: Any) -> bool:
    # a secret reference or a private host file enters the key as {"ref"/"path", "token"}
    return '"token"' not in json.dumps(v, default=str)


def inputs_changed(old: dict[str, dict] | None, new: dict[str, dict]) -> dict[str, Any]:
    """Changed inputs of ``new`` (stage name -> key material) against ``old``, by kind.
    ``old`` None: there is no previous version. A stage missing from ``old`` is listed in
    ``stages_added`` (its previous inputs are unknown, e.g. evicted from the cache)."""
    out: dict[str, Any] = {"first_version": old is None, "recipe": [], "upstream": [], "tools": [],
                           "code": [], "stage_versions": [], "stages_added": [], "stages_removed": []}
    if old is None:
        return out
    tools: dict[str, dict] = {}
    code: dict[str, list[str]] = {}
    recipe_seen: set[str] = set()
    for stage, mat in new.items():
        o = old.get(stage)
        if not isinstance(o, dict):
            out["stages_added"].append(stage)
            continue
        if o.get("version") != mat.get("version"):
            out["stage_versions"].append({"stage": stage, "old": o.get("version"), "new": mat.get("version")})
        oc, nc = o.get("code") or {}, mat.get("code") or {}
        if isinstance(oc, dict) and isinstance(nc, dict):
            for f in sorted(set(oc) | set(nc)):
                if oc.get(f) != nc.get(f):
                    code.setdefault(f, []).append(stage)
        elif oc != nc:
            code.setdefault("(code recorded differently)", []).append(stage)
        oreads, nreads = o.get("reads") or {}, mat.get("reads") or {}
        for k in sorted(set(oreads) | set(nreads)):
            for path in _changed_paths(k, oreads.get(k), nreads.get(k)):
                if path in recipe_seen:
                    continue
                recipe_seen.add(path)
                ov, nv = _value_at(oreads.get(k), k, path), _value_at(nreads.get(k), k, path)
                entry: dict[str, Any] = {"key": path}
                if _shown(ov) and _shown(nv):
                    entry.update(old=ov, new=nv)
                out["recipe"].append(entry)
        ot, nt = o.get("tools") or {}, mat.get("tools") or {}
        for t in sorted(set(ot) | set(nt)):
            if ot.get(t) != nt.get(t):
                tools.setdefault(t, {"tool": t, "old": ot.get(t), "new": nt.get(t), "stages": []})["stages"].append(stage)
        op, np_ = _flat(o.get("pins") or {}), _flat(mat.get("pins") or {})
        for p in sorted(set(op) | set(np_)):
            if op.get(p) != np_.get(p):
                out["upstream"].append({"stage": stage, "pin": p, "old": op.get(p), "new": np_.get(p)})
    out["stages_removed"] = [s for s in old if s not in new]
    out["tools"] = list(tools.values())
    out["code"] = [{"file": f, "stages": s} for f, s in sorted(code.items())]
    return out


def anything(changed: dict[str, Any]) -> bool:
    return any(changed.get(k) for k in ("recipe", "upstream", "tools", "code", "stage_versions",
                                        "stages_added", "stages_removed"))


# -- packages --------------------------------------------------------------------------------

def read_packages(path: Path) -> dict[str, dict[str, str]] | None:
    """packages.txt (name<TAB>version<TAB>arch per line, as publish writes it) by package."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return packages_from([line.split("\t") for line in text.splitlines() if line.strip()])


def packages_from(rows) -> dict[str, dict[str, str]]:
    """Rows of (name, version, arch) or dicts -> {key: {name, version, arch}}; the key is the
    name, or name:arch for a package installed for several architectures."""
    items = []
    for r in rows:
        if isinstance(r, dict):
            items.append({"name": str(r.get("name", "")), "version": str(r.get("version", "")),
                          "arch": str(r.get("arch", ""))})
        else:
            r = list(r) + ["", "", ""]
            items.append({"name": r[0], "version": r[1], "arch": r[2]})
    counts: dict[str, int] = {}
    for it in items:
        counts[it["name"]] = counts.get(it["name"], 0) + 1
    return {(it["name"] if counts[it["name"]] == 1 else f"{it['name']}:{it['arch']}"): it
            for it in items if it["name"]}


def package_diff(old: dict[str, dict] | None, new: dict[str, dict] | None) -> dict[str, Any] | None:
    """added / removed / upgraded / downgraded (both versions), or None when either list is
    unknown (the first version, or an output published without a package list)."""
    if old is None or new is None:
        return None
    out: dict[str, Any] = {"added": [], "removed": [], "upgraded": [], "downgraded": [],
                           "count": {"old": len(old), "new": len(new)}}
    for k in sorted(set(old) | set(new)):
        o, n = old.get(k), new.get(k)
        if o is None:
            out["added"].append({"name": k, "version": n["version"]})
        elif n is None:
            out["removed"].append({"name": k, "version": o["version"]})
        elif o["version"] != n["version"]:
            kind = "upgraded" if compare(n["version"], o["version"]) > 0 else "downgraded"
            out[kind].append({"name": k, "old": o["version"], "new": n["version"]})
    return out


# -- CHANGES.md ------------------------------------------------------------------------------

def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:SHORT] + "…"
    return s if len(s) <= 80 else s[:77] + "…"


def _archive_lines(upstream: list[dict], inputs: dict) -> tuple[list[str], list[dict]]:
    """The suite's InRelease date and digest as one line per stage; the other pins back."""
    by_stage: dict[str, dict[str, dict]] = {}
    rest = []
    for u in upstream:
        leaf = u["pin"].rsplit(".", 1)[-1]
        if leaf in ("inrelease_sha256", "release_date", "suite"):
            by_stage.setdefault(u["stage"] + "|" + u["pin"].rpartition(".")[0], {})[leaf] = u
        else:
            rest.append(u)
    lines = []
    for where, pins in by_stage.items():
        stage, _, sub = where.partition("|")
        now = _flat((inputs.get(stage) or {}).get("pins") or {})
        suite = (pins.get("suite") or {}).get("new") or now.get(f"{sub}.suite" if sub else "suite") or "suite"
        parts = []
        if "release_date" in pins:
            parts.append(f"Date {pins['release_date']['old']} → {pins['release_date']['new']}")
        if "inrelease_sha256" in pins:
            parts.append(f"sha256 {_short(pins['inrelease_sha256']['old'])} → "
                         f"{_short(pins['inrelease_sha256']['new'])}")
        lines.append(f"- upstream: {suite} InRelease ({stage}): " + "; ".join(parts or ["changed"]))
    return lines, rest


def render_markdown(doc: dict[str, Any]) -> str:
    """CHANGES.md from a changes.json document."""
    ch = doc["changed"]
    out = [f"# {doc['recipe']} {doc['version']}", ""]
    prev = doc.get("previous")
    out.append(f"Built {doc['built_at']}; previous version: {prev or 'none (first version)'}.")
    out += ["", "## What changed", ""]
    if ch.get("first_version"):
        out.append("- first version: nothing to compare with")
    lines, rest = _archive_lines(ch.get("upstream", []), doc.get("inputs") or {})
    out += lines
    for u in rest:
        out.append(f"- upstream: {u['stage']} {u['pin']}: {_short(u['old'])} → {_short(u['new'])}")
    for r in ch.get("recipe", []):
        vals = f": {_short(r['old'])} → {_short(r['new'])}" if "old" in r else " (value not shown)"
        out.append(f"- recipe: {r['key']}{vals}")
    for t in ch.get("tools", []):
        out.append(f"- tool: {t['tool']} {t['old']} → {t['new']} ({', '.join(t['stages'])})")
    for s in ch.get("stage_versions", []):
        out.append(f"- stage version: {s['stage']} {s['old']} → {s['new']}")
    for c in ch.get("code", []):
        out.append(f"- code: {c['file']} ({', '.join(c['stages'])})")
    for s in ch.get("stages_added", []):
        out.append(f"- stage {s}: previous inputs unknown (new stage, or its record was evicted)")
    for s in ch.get("stages_removed", []):
        out.append(f"- stage {s}: no longer run")
    if not ch.get("first_version") and not anything(ch):
        out.append("- no input changed (published again, e.g. by `ironforge build`)")
    out += ["", "## Stages", "", "| stage | | why |", "| --- | --- | --- |"]
    for s in doc.get("stages", []):
        out.append(f"| {s['name']} | {'cached' if s['hit'] else 'rebuilt'} | {'' if s['hit'] else s['reason']} |")
    pk = doc.get("packages")
    out += ["", "## Guest packages", ""]
    if pk is None:
        out.append("No package list to compare with.")
    else:
        out.append(f"{pk['count']['old']} → {pk['count']['new']} packages: {len(pk['upgraded'])} upgraded, "
                   f"{len(pk['downgraded'])} downgraded, {len(pk['added'])} added, {len(pk['removed'])} removed.")
        for kind in ("upgraded", "downgraded"):
            if pk[kind]:
                out += ["", f"{kind.capitalize()}:", "", "| package | from | to |", "| --- | --- | --- |"]
                out += [f"| {p['name']} | {p['old']} | {p['new']} |" for p in pk[kind]]
        for kind in ("added", "removed"):
            if pk[kind]:
                out += ["", f"{kind.capitalize()}:", "", "| package | version |", "| --- | --- |"]
                out += [f"| {p['name']} | {p['version']} |" for p in pk[kind]]
    return "\n".join(out) + "\n"
