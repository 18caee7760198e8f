"""The cache-aware stage runner.

A stage's cache key is the sha256 of canonical JSON holding its name and version, digests of
its code (its module and the project modules that module imports), the recipe values it
reads, the key of the stage before it, the versions of the host tools it uses and its
upstream pins. A scheduled rebuild therefore re-runs exactly the stages whose inputs
changed, and those after them; everything else is a hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from builder.cache.lease import Lease
from builder.cache.codekey import CodeDigests
from builder import private_inputs
from builder.cache.store import Store
from builder.errors import FetchError
from builder.host import tools
from builder.host.accel import Accel
from builder.recipe import Recipe, canonical_json
from builder.recipe_view import RecipeView
from builder.stage import Artifact, Output, Part, StageContext, StageDef

log = logging.getLogger("ironforge.engine")


@dataclass(frozen=True)
class Step:
    """A planned stage: its key, whether the cache has it, and why not."""

    stage: StageDef
    key: str | None                 # None: not computable (offline, upstream never fetched)
    material: dict[str, Any]
    hit: bool
    reason: str
    parts: tuple["PartStep", ...] = ()
    remote: bool = False            # a local miss the remote cache holds: a run pulls it


@dataclass(frozen=True)
class PartStep:
    """A planned part of a stage (builder.stage.Part): its own key, hit or miss and why."""

    name: str                       # "export[raw]"
    key: str
    hit: bool
    reason: str


@dataclass
class StepReport:
    name: str
    key: str
    hit: bool
    seconds: float
    reason: str
    parts: list["StepReport"] = field(default_factory=list)


@dataclass
class RunResult:
    recipe: Recipe
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    steps: list[StepReport] = field(default_factory=list)


def _read_value(recipe: Recipe, key: str) -> Any:
    # secrets and private host files enter the key as tokens (settings table decides which)
    return private_inputs.tokenise(recipe, key, recipe.get(key, None))


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
    # the old material was read back from JSON: compare the new one in that form too, so a tuple
    # and the list it was stored as are not a "change"
    new = json.loads(canonical_json(new))
    if old.get("version") != new.get("version"):
        return f"stage version {old.get('version')} -> {new.get('version')}"
    if old.get("code") != new.get("code"):
        return code_reason(old.get("code"), new.get("code") or {})
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


def code_reason(old: dict | None, new: dict) -> str:
    """ "code changed: builder/stages/disk.py" (the files whose code differs, at most three)."""
    if not isinstance(old, dict):
        return "code changed (built before keys covered code)"
    files = [f for f in sorted(set(old) | set(new)) if old.get(f) != new.get(f)]
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    return f"code changed: {shown}"


@dataclass
class Engine:
    store: Store
    accel: Accel
    progress: bool = False
    offline: bool = False
    debug: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    # memo of source digests: each module file is parsed once per process
    code: CodeDigests = field(default_factory=CodeDigests, repr=False)
    # stages shared across machines (builder/cache/remote/cache.py RemoteCache), or None
    remote: Any = None

    def _context(self, recipe: Recipe, workdir, stage: StageDef,
                 pins: dict[str, Any] | None = None) -> StageContext:
        # the stage sees only the recipe keys its key covers (builder/recipe_view.py)
        return StageContext(recipe=RecipeView(recipe, stage.name, stage.reads), accel=self.accel,
                            store=self.store, workdir=workdir,
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
            "code": self.code.for_functions(stage.run, stage.pins),
            "reads": {k: _read_value(recipe, k) for k in stage.reads},
            "previous": previous.key if previous else None,
            "previous_stage": previous.stage.name if previous else None,
            "tools": tools.versions(stage.tools),
            "pins": pins,
        }

    def part_material(self, stage: StageDef, part: Part, previous: Step | None) -> dict[str, Any]:
        """A part's key material: the input's key and the part's options, not the stage's reads
        (adding a format to outputs.formats leaves every other format's key as it was)."""
        return {
            "stage": stage.name,
            "part": part.name,
            "version": stage.version,
            "code": self.code.for_functions(part.run),
            "reads": dict(part.options),
            "previous": previous.key if previous else None,
            "previous_stage": previous.stage.name if previous else None,
            "tools": tools.versions(part.tools),
        }

    def _parts(self, recipe: Recipe, stage: StageDef, inputs: dict[str, Artifact] | None) -> list[Part]:
        if stage.parts is None:
            return []
        return stage.parts(self._context(recipe, None, stage), inputs)

    def _plan_parts(self, recipe: Recipe, stage: StageDef, previous: Step | None,
                    stage_hit: bool) -> tuple[PartStep, ...]:
        out = []
        for part in self._parts(recipe, stage, None):
            mat = self.part_material(stage, part, previous)
            key = hashlib.sha256(canonical_json(mat).encode()).hexdigest()
            name = f"{stage.name}[{part.name}]"
            hit = stage_hit or self.store.read_meta(key) is not None
            reason = "cached" if hit else diff_reason(self.store.last_material(recipe.name, name), mat)
            out.append(PartStep(name, key, hit, reason))
        return tuple(out)

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
            remote = not hit and self.remote is not None and self.remote.has(key)
            if remote:
                reason = f"in the remote cache {self.remote.address}: pulled, not built ({reason})"
            parts = self._plan_parts(recipe, stage, steps[-1] if steps else None, hit)
            steps.append(Step(stage, key, mat, hit, reason, parts, remote))
        return steps

    def _artifact(self, stage: StageDef, key: str, meta: dict) -> Artifact:
        return Artifact(stage=stage.name, key=key, dir=self.store.stage_dir(key),
                        files=dict(meta.get("files", {})), data=dict(meta.get("data", {})))

    def run(self, recipe: Recipe, stages: list[StageDef], force: bool = False,
            lease: Lease | None = None) -> RunResult:
        """Run the stages in order, reusing every cached one; each finished stage is durable,
        so a killed run resumes from the last stage that finished. Every stage used stays
        pinned against ``cache gc`` while ``lease`` lasts (by default, while this call runs)."""
        if lease is None:
            with Lease(self.store) as own:
                return self.run(recipe, stages, force, lease=own)
        self.store.remove_dead_workdirs()
        result = RunResult(recipe)
        previous: Step | None = None
        subject: dict | None = None     # the previous stage's manifest in the remote cache
        total = len(stages)
        for i, stage in enumerate(stages, 1):
            mat = self.material(recipe, stage, previous)
            key = hashlib.sha256(canonical_json(mat).encode()).hexdigest()
            forced_aside = False
            if force and self.store.read_meta(key) is not None:
                # --force never replaces a complete entry: another recipe's layer may use its
                # image as a qcow2 backing file. The re-run goes under a key of its own (and so
                # does every stage after it, whose "previous" differs); unforced builds keep
                # hitting the original entry until cache gc removes what nothing needs.
                mat = dict(mat, forced=f"{time.time_ns()}-{os.getpid()}")
                key = hashlib.sha256(canonical_json(mat).encode()).hexdigest()
                forced_aside = True
            step = Step(stage, key, mat, False, "")
            t0 = time.monotonic()
            part_reports: list[StepReport] = []
            with self.store.stage_lock(key):
                lease.hold(key)  # before the meta is read: see builder/cache/lease.py
                meta = None if force else self.store.read_meta(key)
                reason, hit = "cached", meta is not None
                if not hit and not force and self.remote is not None:
                    meta = self.remote.pull(self.store, key, stage.name, mat)
                    reason, hit = "pulled", meta is not None
                if hit:
                    log.info("[%d/%d] %s: %s (%s)", i, total, stage.name, reason if reason == "cached"
                             else f"pulled from {self.remote.address}", key[:12])
                    part_reports = [StepReport(n, k, True, 0.0, reason) for n, k in meta.get("parts", {}).items()]
                else:
                    reason = "forced" if force else diff_reason(
                        self.store.last_material(recipe.name, stage.name), mat)
                    log.info("[%d/%d] %s: running (%s)", i, total, stage.name, reason)
                    parts = self._run_parts(recipe, stage, previous, result.artifacts, force, lease, part_reports)
                    meta = self._execute(recipe, stage, key, mat, result.artifacts, parts,
                                         {r.name: r.key for r in part_reports})
                    hit = False
            if not forced_aside:  # a one-off key explains no later miss
                self.store.remember_material(recipe.name, stage.name, mat)
                if self.remote is not None:  # outside the stage lock: an upload takes a while
                    subject = self.remote.push(self.store, key, stage.name, subject)
            art = self._artifact(stage, key, meta)
            result.artifacts[stage.name] = art
            result.steps.append(StepReport(stage.name, key, hit, round(time.monotonic() - t0, 3), reason,
                                           part_reports))
            previous = step
        return result

    def _run_parts(self, recipe: Recipe, stage: StageDef, previous: Step | None, done: dict[str, Artifact],
                   force: bool, lease: Lease, reports: list[StepReport]) -> dict[str, Artifact]:
        """Make or find each part of ``stage``, each under its own key and lock, like a stage."""
        # the stage's parts() sees every earlier artifact, as its run does (a conversion's export
        # describes the import's source VM); each part's own run gets only the image before it
        inputs = {**done, "previous": list(done.values())[-1]} if done else {}
        out: dict[str, Artifact] = {}
        for part in self._parts(recipe, stage, inputs):
            name = f"{stage.name}[{part.name}]"
            mat = self.part_material(stage, part, previous)
            key = hashlib.sha256(canonical_json(mat).encode()).hexdigest()
            if force and self.store.read_meta(key) is not None:
                mat = dict(mat, forced=f"{time.time_ns()}-{os.getpid()}")   # as for stages: set aside
                key = hashlib.sha256(canonical_json(mat).encode()).hexdigest()
            t0 = time.monotonic()
            with self.store.stage_lock(key):
                lease.hold(key)
                meta = self.store.read_meta(key)
                if meta is not None:
                    log.info("  %s: cached (%s)", name, key[:12])
                    reason = "cached"
                else:
                    reason = "forced" if force else diff_reason(self.store.last_material(recipe.name, name), mat)
                    log.info("  %s: running (%s)", name, reason)
                    ctx = StageContext(recipe=RecipeView(recipe, name, ()), accel=self.accel, store=self.store,
                                       workdir=self.store.new_stage_workdir(key),
                                       log=logging.getLogger(f"ironforge.stage.{stage.name}"),
                                       progress=self.progress, offline=self.offline, debug=self.debug,
                                       options=self.options, part_options=dict(part.options))
                    meta = self._commit(recipe, name, stage.version, key, mat, ctx,
                                        lambda c, p=part: p.run(c, {"previous": inputs["previous"]}))
            if "forced" not in mat:
                self.store.remember_material(recipe.name, name, mat)
            out[part.name] = Artifact(stage=name, key=key, dir=self.store.stage_dir(key),
                                      files=dict(meta.get("files", {})), data=dict(meta.get("data", {})))
            reports.append(StepReport(name, key, reason == "cached", round(time.monotonic() - t0, 3), reason))
        return out

    def _commit(self, recipe: Recipe, name: str, version: int, key: str, material: dict, ctx: StageContext,
                run, extra: dict | None = None) -> dict:
        """Run into ``ctx.workdir`` and commit it as the entry ``key`` (or remove it on failure)."""
        t0 = time.monotonic()
        try:
            out = run(ctx)
            if not isinstance(out, Output):
                raise TypeError(f"stage {name} returned {type(out).__name__}, not Output")
            meta = {"stage": name, "version": version, "files": out.files, "data": out.data,
                    "material": material, "seconds": round(time.monotonic() - t0, 3),
                    "recipe": recipe.name, "finished": time.time(), **(extra or {})}
            self.store.commit_stage(key, ctx.workdir, meta)
        except BaseException:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
            raise
        return self.store.read_meta(key) or meta

    def _execute(self, recipe: Recipe, stage: StageDef, key: str, material: dict,
                 done: dict[str, Artifact], parts: dict[str, Artifact] | None = None,
                 part_keys: dict[str, str] | None = None) -> dict:
        workdir = self.store.new_stage_workdir(key)
        inputs = dict(done)
        if done:
            inputs["previous"] = list(done.values())[-1]
        ctx = self._context(recipe, workdir, stage, material.get("pins"))
        ctx.parts = dict(parts or {})
        return self._commit(recipe, stage.name, stage.version, key, material, ctx,
                            lambda c: stage.run(c, inputs), {"parts": part_keys} if part_keys else None)

