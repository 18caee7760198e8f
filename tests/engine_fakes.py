"""Small fake stages for engine tests: real files, real cache, no guests."""

from __future__ import annotations

import os
import time
from pathlib import Path

from builder.cache.store import Store
from builder.engine import Engine
from builder.host.accel import Accel
from builder.recipe import Recipe
from builder.stage import Output, StageDef


def _count(ctx, name: str) -> None:
    with open(Path(ctx.options["counter_dir"]) / "runs.log", "a") as f:
        f.write(name + "\n")


def _a(ctx, inputs):
    _count(ctx, "a")
    (ctx.workdir / "a.txt").write_text(f"a:{ctx.recipe.get('x')}")
    return Output(files={"out": "a.txt"}, data={"x": ctx.recipe.get("x")})


def _b(ctx, inputs):
    _count(ctx, "b")
    prev = inputs["previous"].path("out").read_text()
    (ctx.workdir / "b.txt").write_text(f"{prev}|b:{ctx.recipe.get('y')}")
    return Output(files={"out": "b.txt"})


def _slow(ctx, inputs):
    """Writes a big file slowly, announcing when it started so a test can kill it mid-write."""
    _count(ctx, "slow")
    marker = Path(ctx.options["counter_dir"]) / "slow.started"
    with open(ctx.workdir / "big.bin", "wb") as f:
        marker.write_text(str(os.getpid()))
        for _ in range(int(ctx.options.get("slow_chunks", 40))):
            f.write(b"\0" * (1 << 20))
            f.flush()
            time.sleep(float(ctx.options.get("slow_delay", 0.05)))
    return Output(files={"out": "big.bin"})


def _c(ctx, inputs):
    _count(ctx, "c")
    prev = inputs["previous"].path("out").stat().st_size
    (ctx.workdir / "c.txt").write_text(str(prev))
    return Output(files={"out": "c.txt"})


def _qemu(*args: str) -> None:
    from builder.host.proc import run
    run(list(args), what=args[0], timeout=60)


def _pattern(ctx) -> str:
    """A byte no earlier run of any fake stage wrote: a rebuild is never byte-identical."""
    return hex(len(runs(Path(ctx.options["counter_dir"]))) % 250 + 1)


def _base(ctx, inputs):
    """A real 1 MiB qcow2 whose first 64 KiB hold a pattern that differs on every run."""
    img = ctx.workdir / "base.qcow2"
    _qemu("qemu-img", "create", "-q", "-f", "qcow2", str(img), "1M")
    _qemu("qemu-io", "-f", "qcow2", "-c", f"write -P {_pattern(ctx)} 0 64k", str(img))
    _count(ctx, "base")
    return Output(files={"image": "base.qcow2"})


def _layer(ctx, inputs):
    """A qcow2 overlay on the previous stage's image (absolute backing path, as the real stages
    make them) with its own pattern in the second 64 KiB."""
    img = ctx.workdir / "layer.qcow2"
    _qemu("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
          "-b", str(inputs["previous"].image.resolve()), str(img))
    _qemu("qemu-io", "-f", "qcow2", "-c", f"write -P {_pattern(ctx)} 64k 64k", str(img))
    _count(ctx, "layer")
    return Output(files={"image": "layer.qcow2"})


A = StageDef("a", 1, ("x",), _a)
B = StageDef("b", 1, ("y",), _b)
SLOW = StageDef("slow", 1, ("z",), _slow)
C = StageDef("c", 1, (), _c)
BASE = StageDef("base", 1, ("x",), _base)
LAYER = StageDef("layer", 1, ("y",), _layer)


def recipe(name: str = "fake", **values) -> Recipe:
    return Recipe(name=name, path=None, values=values)


def engine(cache: Path, counter: Path, **options) -> Engine:
    return Engine(store=Store(cache), accel=Accel("tcg", "test"),
                  options={"counter_dir": str(counter), **options})


def runs(counter: Path) -> list[str]:
    p = counter / "runs.log"
    return p.read_text().split() if p.exists() else []


if __name__ == "__main__":
    # used by the SIGKILL test: run a pipeline in a separate process
    import sys
    cache, counter = Path(sys.argv[1]), Path(sys.argv[2])
    eng = engine(cache, counter, slow_delay=sys.argv[3] if len(sys.argv) > 3 else 0.05)
    eng.run(recipe(x=1, y=2, z=3), [A, B, SLOW, C])
    print("done")


# -- a stage with parts (builder.stage.Part): one per name in recipe "parts", each keyed on its
# own "n" option; a part named "bad" fails after writing
def _part(ctx, inputs):
    name = ctx.part_options["name"]
    _count(ctx, f"part-{name}")
    (ctx.workdir / f"{name}.txt").write_text(f"{inputs['previous'].path('out').read_text()}|{name}:{ctx.part_options['n']}")
    if name == "bad":
        raise RuntimeError("part failed")
    return Output(files={name: f"{name}.txt"})


def _parts(ctx, inputs):
    from builder.stage import Part
    return [Part(n, {"name": n, "n": v}, _part) for n, v in ctx.recipe.get("parts").items()]


def _gather(ctx, inputs):
    _count(ctx, "gather")
    for name, art in ctx.parts.items():
        os.link(art.path(name), ctx.workdir / f"{name}.txt")
    return Output(files={n: f"{n}.txt" for n in ctx.parts})


P = StageDef("p", 1, ("parts",), _gather, parts=_parts)
