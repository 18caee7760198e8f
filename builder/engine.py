"""The cache-aware stage runner.

A stage's cache key is the sha256 of canonical JSON holding its name and version, the recipe
values it reads, the key of the stage before it, the versions of the host tools it uses and
its upstream pins. A scheduled rebuild therefore re-runs exactly the stages whose inputs
changed, and those after them; everything else is a hit.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from builder.cache.store import Store
from builder.errors import FetchError, IronforgeError
from builder.host import tools
from builder.host.accel import Accel
from builder.recipe import Recipe, canonical_json
from builder.stage import Artifact, Output, StageContext, StageDef

log = logging.getLogger("ironforge.engine")

_SECRET_KEYS = ("customize.root_password", "customize.users", "windows.product_key",
                "windows.admin_password", "windows.users")


@dataclass(frozen=True)
class Step:
    """A planned stage: its key, whether the cache has it, and why not."""

    stage: StageDef
    key: str | None                 # None: not computable (offline, upstream never fetched)
    material: dict[str, Any]
    hit: bool
    reason: str


@dataclass
class StepReport:
    name: str
    key: str
    hit: bool
    seconds: float
    reason: str


@dataclass
class RunResult:
    recipe: Recipe
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    steps: list[StepReport] = field(default_factory=list)


def _read_value(recipe: Recipe, key: str) -> Any:
    value = recipe.get(key, None)
    if key in _SECRET_KEYS or any(key.startswith(k + ".") or k.startswith(key + ".") for k in _SECRET_KEYS):
        value = _tokenise_secrets(recipe, value)
    return value


def _tokenise_secrets(recipe: Recipe, value: Any) -> Any:
    """Replace secret references by a token of their current value, so a changed password
    re-runs the stage without the key (or the plan output) revealing anything."""
    if isinstance(value, dict):
        if set(value) <= {"env", "file"} and len(value) == 1:
            try:
                from builder.secrets import cache_token
            except ImportError:  # secrets module not present: the reference alone
                return value
            try:
                return {"ref": value, "token": cache_token(value, recipe.dir)}
            except IronforgeError:
                return {"ref": value, "token": "unresolved"}
        return {k: _tokenise_secrets(recipe, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tokenise_secrets(recipe, v) for v in value]
    return value


def _changed_paths(key: str, old: Any, new: Any) -> list[str]:
    """The deepest dotted paths at which two recipe values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            if old.get(k) != new.get(k):
                out += _changed_paths(f"{key}.{k}", old.get(k), new.get(k))
        return out
    if old == new:
        return []
    # a secret's token changed: name the secret's key, not our bookkeeping
    return [key.removesuffix(".token")]


def diff_reason(old: dict | None, new: dict) -> str:
    """Which input changed between two key materials, in words."""
    if old is None:
        return "never built"
    if old.get("version") != new.get("version"):
        return f"stage version {old.get('version')} -> {new.get('version')}"
    o, n = old.get("reads", {}), new.get("reads", {})
    changed = [f"{p} changed" for k in sorted(set(o) | set(n)) for p in _changed_paths(k, o.get(k), n.get(k))]
    if changed:
        return ", ".join(changed)
    if old.get("previous") != new.get("previous"):
        return f"input {new.get('previous_stage')} changed"
    for k in sorted(set(old.get("tools", {})) | set(new.get("tools", {}))):
        if old.get("tools", {}).get(k) != new.get("tools", {}).get(k):
            return f"tool {k} {old['tools'].get(k)} -> {new['tools'].get(k)}"
    for k in sorted(set(old.get("pins", {})) | set(new.get("pins", {}))):
        if old.get("pins", {}).get(k) != new.get("pins", {}).get(k):
            return f"upstream {k} changed"
    return "not in the cache (evicted or never finished)"


@dataclass
class Engine:
    store: Store
    accel: Accel
    progress: bool = False
    offline: bool = False
    debug: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def _context(self, recipe: Recipe, workdir, stage: StageDef,
                 pins: dict[str, Any] | None = None) -> StageContext:
        return StageContext(recipe=recipe, accel=self.accel, store=self.store, workdir=workdir,
                            log=logging.getLogger(f"ironforge.stage.{stage.name}"),
                            progress=self.progress, offline=self.offline, debug=self.debug,
                            options=self.options, pins=dict(pins or {}))

    def material(self, recipe: Recipe, stage: StageDef, previous: Step | None) -> dict[str, Any]:
        pins: dict[str, Any] = {}
        if stage.pins is not None:
            pins = stage.pins(self._context(recipe, None, stage))
        return {
            "stage": stage.name,
            "version": stage.version,
            "reads": {k: _read_value(recipe, k) for k in stage.reads},
            "previous": previous.key if previous else None,
            "previous_stage": previous.stage.name if previous else None,
            "tools": tools.versions(stage.tools),
            "pins": pins,
        }

    def plan(self, recipe: Recipe, stages: list[StageDef]) -> list[Step]:
        """Each stage's key and whether the cache has it. Offline, a pin whose upstream file
        was never downloaded makes that stage's key (and every later one) unknowable: those
        steps are misses with key None and the reason, not an error, so a plan always shows
        the whole pipeline."""
        steps: list[Step] = []
        for stage in stages:
            if steps and steps[-1].key is None:
                steps.append(Step(stage, None, {}, False, f"input {steps[-1].stage.name} unknown offline"))
                continue
            try:
                mat = self.material(recipe, stage, steps[-1] if steps else None)
            except FetchError as exc:
                if not self.offline:
                    raise
                steps.append(Step(stage, None, {}, False,
                                  f"upstream pin unknown offline ({exc.message}); plan without --offline"))
                continue
            key = hashlib.sha256(canonical_json(mat).encode()).hexdigest()
            hit = self.store.read_meta(key) is not None
            reason = "cached" if hit else diff_reason(self.store.last_material(recipe.name, stage.name), mat)
            steps.append(Step(stage, key, mat, hit, reason))
        return steps

    def _artifact(self, stage: StageDef, key: str, meta: dict) -> Artifact:
        return Artifact(stage=stage.name, key=key, dir=self.store.stage_dir(key),
                        files=dict(meta.get("files", {})), data=dict(meta.get("data", {})))

    def run(self, recipe: Recipe, stages: list[StageDef], force: bool = False) -> RunResult:
        """Run the stages in order, reusing every cached one; each finished stage is durable,
        so a killed run resumes from the last stage that finished."""
        self.store.remove_dead_workdirs()
        result = RunResult(recipe)
        previous: Step | None = None
        total = len(stages)
        for i, stage in enumerate(stages, 1):
            mat = self.material(recipe, stage, previous)
            key = hashlib.sha256(canonical_json(mat).encode()).hexdigest()
            step = Step(stage, key, mat, False, "")
            t0 = time.monotonic()
            with self.store.stage_lock(key):
                meta = None if force else self.store.read_meta(key)
                if meta is not None:
                    log.info("[%d/%d] %s: cached (%s)", i, total, stage.name, key[:12])
                    reason, hit = "cached", True
                else:
                    reason = "forced" if force else diff_reason(
                        self.store.last_material(recipe.name, stage.name), mat)
                    log.info("[%d/%d] %s: running (%s)", i, total, stage.name, reason)
                    meta = self._execute(recipe, stage, key, mat, result.artifacts)
                    hit = False
            self.store.remember_material(recipe.name, stage.name, mat)
            art = self._artifact(stage, key, meta)
            result.artifacts[stage.name] = art
            result.steps.append(StepReport(stage.name, key, hit, round(time.monotonic() - t0, 3), reason))
            previous = step
        return result

    def _execute(self, recipe: Recipe, stage: StageDef, key: str, material: dict,
                 done: dict[str, Artifact]) -> dict:
        workdir = self.store.new_stage_workdir(key)
        inputs = dict(done)
        if done:
            inputs["previous"] = list(done.values())[-1]
        t0 = time.monotonic()
        try:
            out = stage.run(self._context(recipe, workdir, stage, material.get("pins")), inputs)
            if not isinstance(out, Output):
                raise TypeError(f"stage {stage.name} returned {type(out).__name__}, not Output")
            meta = {"stage": stage.name, "version": stage.version, "files": out.files, "data": out.data,
                    "material": material, "seconds": round(time.monotonic() - t0, 3),
                    "recipe": recipe.name, "finished": time.time()}
            self.store.commit_stage(key, workdir, meta)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return self.store.read_meta(key) or meta
