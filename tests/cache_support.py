"""Fake stages that make real qcow2 layers (qemu-img, no guest), for the cache du/gc/sweep tests.

``disk`` makes a small qcow2 with some allocated data; ``export`` lays an overlay on it (absolute
backing path, as builder.qemu_img.overlay does) and is what ``publish`` publishes. ``pad``
writes incompressible bytes so sizes are measurable.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from builder.cache.store import Store
from builder.engine import Engine
from builder.host.accel import Accel
from builder.host.proc import run
from builder.recipe import Recipe
from builder.stage import Output, StageDef


def qemu_img(*args: str) -> str:
    return run(["qemu-img", *args], what="test qemu-img", timeout=60).stdout


def _disk(ctx, inputs):
    img = ctx.workdir / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(img), "8M")
    size = int(ctx.options.get("pad_kib", 64))
    (ctx.workdir / "pad.bin").write_bytes(os.urandom(size * 1024))
    # a stage names the downloads it used by sha256 in its data (as fetch does)
    return Output(files={"image": "disk.qcow2", "pad": "pad.bin"},
                  data={"seed": ctx.recipe.get("seed"), "fetched": {"sha256": ctx.options.get("download")}})


def _export(ctx, inputs):
    base = inputs["previous"].image
    img = ctx.workdir / "image.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base.resolve()), str(img))
    delay = float(ctx.options.get("export_delay", 0))
    if delay:
        (Path(ctx.options["counter_dir"]) / "export.started").write_text(str(os.getpid()))
        time.sleep(delay)
    return Output(files={"image": "image.qcow2", "qcow2": "image.qcow2"},
                  data={"published_formats": ["qcow2"]})


DISK = StageDef("disk", 1, ("seed",), _disk)
EXPORT = StageDef("export", 1, (), _export)
PIPELINE = [DISK, EXPORT]


def recipe(name: str, seed: int) -> Recipe:
    return Recipe(name=name, path=None,
                  values={"seed": seed, "arch": "x86_64", "os": {"family": "debian", "release": "12"}})


def engine(cache: Path, counter: Path | None = None, **options) -> Engine:
    opts = {"counter_dir": str(counter)} if counter else {}
    return Engine(store=Store(cache), accel=Accel("tcg", "test"), options={**opts, **options})


if __name__ == "__main__":
    # a build in another process: python cache_support.py CACHE COUNTER NAME SEED DELAY
    cache, counter, name, seed, delay = sys.argv[1:6]
    eng = engine(Path(cache), Path(counter), export_delay=float(delay))
    res = eng.run(recipe(name, int(seed)), PIPELINE)
    print(" ".join(s.key for s in res.steps))
