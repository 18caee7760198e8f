"""One "machine" of the remote-cache tests: a process with its own local cache that runs fake
stages (tests/engine_fakes.py: real qcow2 files and overlays, no guests) against a registry.

    python tests/remote_child.py CACHE COUNTER STAGES [--remote URL] [--readonly] [--plan] [-v]

The remote comes from --remote, else the environment or the machine's configuration file
($IRONFORGE_CONFIG), as in the CLI. STAGES is a comma list of: base, layer (fake qcow2 base + overlay), big (a file of
$BIG_MB MiB, so a push takes long enough to be killed mid-way). Prints the steps as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import engine_fakes as F  # noqa: E402

from builder import user_config  # noqa: E402
from builder.cache.remote.cache import RemoteCache  # noqa: E402
from builder.log import setup  # noqa: E402
from builder.stage import Output, StageDef  # noqa: E402


def _big(ctx, inputs):
    F._count(ctx, "big")
    with open(ctx.workdir / "big.bin", "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(int(os.environ.get("BIG_MB", "200"))):
            f.write(block[:-8] + i.to_bytes(8, "big"))
    return Output(files={"out": "big.bin"})


BIG = StageDef("big", 1, ("z",), _big)
STAGES = {"base": F.BASE, "layer": F.LAYER, "big": BIG}


def main(argv: list[str]) -> int:
    cache, counter, names = Path(argv[0]), Path(argv[1]), argv[2].split(",")
    url = argv[argv.index("--remote") + 1] if "--remote" in argv else None
    setup(1 if "-v" in argv else 0, False)
    counter.mkdir(parents=True, exist_ok=True)
    eng = F.engine(cache, counter)
    # as the CLI does: the flag, else $IRONFORGE_CACHE_REMOTE, else the configuration file
    eng.remote = RemoteCache.from_options(url, "--readonly" in argv, config=user_config.load())
    if "--plan" in argv:          # what `ironforge plan` says, run nothing
        steps = eng.plan(F.recipe(x=1, y=2, z=3), [STAGES[n] for n in names])
        print(json.dumps({"plan": [{"name": s.stage.name, "key": s.key, "hit": s.hit, "remote": s.remote,
                                    "reason": s.reason} for s in steps], "runs": F.runs(counter)}))
        return 0
    res = eng.run(F.recipe(x=1, y=2, z=3), [STAGES[n] for n in names])
    print(json.dumps({"steps": [{"name": s.name, "key": s.key, "hit": s.hit, "reason": s.reason}
                                for s in res.steps],
                      "files": {n: str(a.dir / next(iter(a.files.values()))) for n, a in res.artifacts.items()},
                      "runs": F.runs(counter)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
