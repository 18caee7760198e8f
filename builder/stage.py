"""What a stage is: a named, versioned plain function over typed inputs.

A stage module defines one ``STAGE = StageDef(...)``. The engine computes its cache key from
the stage's name and version, the recipe values it reads, its inputs' keys, the versions of
the host tools it uses and its upstream pins; it runs ``run(ctx, inputs)`` in a fresh work
directory and publishes that directory atomically as the stage's artifact.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from builder.cache.store import Store
from builder.host.accel import Accel

if TYPE_CHECKING:  # the recipe module imports nothing from here; this only names the type
    from builder.recipe import Recipe


@dataclass(frozen=True)
class Artifact:
    """A finished stage's output, as read back from the cache."""

    stage: str
    key: str
    dir: Path
    files: dict[str, str]          # logical name -> file name inside ``dir``
    data: dict[str, Any]           # JSON facts the stage reported (pins, guest facts, …)

    def path(self, name: str) -> Path:
        return self.dir / self.files[name]

    @property
    def image(self) -> Path:
        """The disk image this stage produced (by convention under the name 'image')."""
        return self.path("image")


@dataclass(frozen=True)
class Output:
    """What ``run`` returns: files it wrote into ``ctx.workdir`` and facts about them."""

    files: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """Everything a stage may use. No globals: this is passed in."""

    # From the engine, a RecipeView: only the keys StageDef.reads declares (else UndeclaredRead).
    recipe: "Recipe"
    accel: Accel
    store: Store
    workdir: Path                  # write outputs here; it becomes the artifact directory
    log: logging.Logger
    progress: bool = False         # show tqdm bars
    offline: bool = False          # use the cache only; no network
    debug: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # CLI-level knobs (verify timeout…)
    # The upstream pins the engine computed for this stage's cache key, handed to ``run`` so
    # it builds from exactly what it was keyed on (and need not ask the network twice).
    pins: dict[str, Any] = field(default_factory=dict)
    # A part's run (see Part): the options that part is keyed on; empty for a stage's own run.
    part_options: dict[str, Any] = field(default_factory=dict)
    # The stage's own run: its parts' artifacts by part name (the engine made or found them).
    parts: dict[str, Artifact] = field(default_factory=dict)


def recipe_env(ctx: StageContext):
    """The environment secret references (``{ env = "X" }``) resolve in: the one the CLI handed
    in (tests, --env files), else the process's own."""
    return ctx.options["env"] if ctx.options.get("env") is not None else os.environ


@dataclass(frozen=True)
class Part:
    """A piece of a stage's output cached as an entry of its own, keyed on the stage's input
    artifact's key and ``options`` only (not on the stage's recipe values), so a stage that makes
    several independent things (export: one file per format) re-makes only the pieces whose own
    inputs changed. ``run(ctx, inputs)`` sees no recipe values, ``ctx.part_options`` and the input
    as ``inputs["previous"]``; the stage's own run then gets every part in ``ctx.parts``."""

    name: str
    options: dict[str, Any]
    run: Callable[[StageContext, dict[str, Artifact]], Output]
    tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageDef:
    name: str
    version: int
    reads: tuple[str, ...]                      # recipe key paths (a prefix covers its subtree)
    run: Callable[[StageContext, dict[str, Artifact]], Output]
    tools: tuple[str, ...] = ()                 # host tools whose versions go into the key
    # Upstream pins known before running (e.g. sha256 of InRelease); may use the network.
    pins: Callable[[StageContext], dict[str, Any]] | None = None
    inputs: tuple[str, ...] = ()                # names of earlier stages whose artifacts it takes
    doc: str = ""
    # Separately cached pieces, from the recipe view (and, when running, the inputs; None in a
    # plan, which knows keys but no artifacts). See Part.
    parts: Callable[[StageContext, dict[str, Artifact] | None], list[Part]] | None = None
