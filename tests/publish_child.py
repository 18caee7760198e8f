"""Publishes a tiny fake build, pausing at a named point of publish (the SIGKILL tests drive it).

usage: publish_child.py CACHE OUTPUT LABEL [PAUSE_AT MARKER]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from builder.cache.store import Store
from builder.engine import Engine
from builder.host.accel import Accel
from builder.publish import publish
from builder.recipe import Recipe
from builder.stage import Output, StageDef


def _export(ctx, inputs):
    label = ctx.recipe.get("label")
    (ctx.workdir / "img.qcow2").write_bytes(label.encode() * 4096)   # 4096 copies: easy to tell torn
    return Output(files={"qcow2": "img.qcow2", "image": "img.qcow2"},
                  data={"published_formats": ["qcow2"]})


EXPORT = StageDef("export", 1, ("label",), _export)


def build(cache: Path, label: str):
    recipe = Recipe(name="pub", path=None, values={
        "arch": "amd64", "os": {"family": "debian", "release": "12"}, "label": label})
    eng = Engine(store=Store(cache), accel=Accel("tcg", "test"))
    return eng, eng.run(recipe, [EXPORT])


def publish_label(cache: Path, output: Path, label: str, pause=None) -> Path:
    eng, result = build(cache, label)
    return publish(result, output, eng.accel, None, pause=pause)


if __name__ == "__main__":
    cache, output, label = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    pause_at = sys.argv[4] if len(sys.argv) > 4 else None
    marker = Path(sys.argv[5]) if len(sys.argv) > 5 else None

    def pause(point: str) -> None:
        if point == pause_at:
            marker.write_text(point)
            time.sleep(600)   # the test SIGKILLs us here

    publish_label(cache, output, label, pause)
