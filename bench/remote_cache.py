"""Remote stage cache benchmark: one run, a short table.

1. second machine's build ÷ a cold build (goal < 10 %): machine one builds the recipe (all
   stages, verify included) into an empty cache and pushes every stage to a registry; machine
   two, with an empty cache of its own, runs the same pipeline and pulls all of it;
2. pull throughput ÷ ``curl`` of the same blob from the same registry (goal >= 0.8x): the
   largest blob, fetched by ironforge's client (streamed, sha256-checked) and by ``curl -o``
   (and ``curl -o`` + ``sha256sum``, the same check by hand), alternately, best of 5 each.

The registry is Debian's docker-registry on loopback (started here, in a temp dir).

    python bench/remote_cache.py [--recipe debian-12-amd64] [--reuse CACHE]

--reuse CACHE takes machine one's build from an existing cache (e.g. ~/.cache/ironforge-test/engine)
and its cold time from the stage times recorded in the cached stages' meta.json (what the cold
run took). Without it, the cold build runs here: ~10-15 min under TCG.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from registry_support import registry  # noqa: E402

from builder import pipeline  # noqa: E402
from builder.cache.remote.address import parse  # noqa: E402
from builder.cache.remote.cache import RemoteCache  # noqa: E402
from builder.cache.remote.registry import Registry  # noqa: E402
from builder.cache.store import Store  # noqa: E402
from builder.engine import Engine  # noqa: E402
from builder.host.accel import choose  # noqa: E402
from builder.recipe import load  # noqa: E402


def pull_throughput(url: str, hostport: str, digest: str, size: int, tmp: Path) -> tuple[float, float, float]:
    """Best of 5, alternating: ironforge's pull (checks the digest), ``curl -o`` (checks
    nothing), and ``curl -o`` + ``sha256sum`` (the same check by hand)."""
    reg = Registry(parse(url), None)
    blob_url = f"http://{hostport}/v2/{parse(url).repo}/blobs/{digest}"
    ours, curl, checked = [], [], []
    for _ in range(5):
        dst = tmp / "curl.bin"
        t0 = time.monotonic()
        subprocess.run(["curl", "-sf", "-o", str(dst), blob_url], check=True)
        curl.append(time.monotonic() - t0)
        subprocess.run(["sha256sum", str(dst)], check=True, stdout=subprocess.DEVNULL)
        checked.append(time.monotonic() - t0)
        dst.unlink()
        dst = tmp / "ours.bin"
        t0 = time.monotonic()
        with open(dst, "wb") as f:
            reg.blob_pull(digest, size, f)
        ours.append(time.monotonic() - t0)
        dst.unlink()
    return min(ours), min(curl), min(checked)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="debian-12-amd64")
    ap.add_argument("--reuse", type=Path, help="machine one's cache (see the docstring)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    recipe = load(args.recipe)
    stages = pipeline.stages_for(recipe, verify=True)
    accel = choose()
    tmp = Path(tempfile.mkdtemp(prefix="ironforge-bench-remote-"))
    try:
        with registry(tmp / "registry") as server:
            url = server.url()
            one = Engine(Store(args.reuse or tmp / "one"), accel)
            t0 = time.monotonic()
            cold = one.run(recipe, stages)
            t_cold = time.monotonic() - t0
            if args.reuse:
                t_cold = sum(float(one.store.read_meta(s.key).get("seconds", 0)) for s in cold.steps)
            one.remote = RemoteCache(parse(url))
            t0 = time.monotonic()
            pushed = one.run(recipe, stages)                 # all hits: each one pushed
            t_push = time.monotonic() - t0
            assert all(s.hit for s in pushed.steps) and len(one.remote.pushed) == len(stages)

            two = Engine(Store(tmp / "two"), accel, remote=RemoteCache(parse(url), readonly=True))
            t0 = time.monotonic()
            second = two.run(recipe, stages)
            t_second = time.monotonic() - t0
            assert [s.reason for s in second.steps] == ["pulled"] * len(stages), \
                [(s.name, s.reason) for s in second.steps]

            blobs = []
            for s in second.steps:
                data, _ = Registry(parse(url), None).manifest_get(s.key)
                blobs += [(layer["size"], layer["digest"]) for layer in json.loads(data)["layers"]]
            size, digest = max(blobs)
            total = sum(b[0] for b in blobs)
            t_ours, t_curl, t_checked = pull_throughput(url, server.hostport, digest, size, tmp)

        mib = 1 << 20
        rows = [
            (f"cold build ({len(stages)} stages){' [recorded]' if args.reuse else ''}", f"{t_cold:8.1f} s", ""),
            ("push of every stage (machine one)", f"{t_push:8.1f} s", f"{total / mib:.0f} MiB in {len(blobs)} blobs"),
            ("second machine's build (all pulled)", f"{t_second:8.1f} s",
             f"{100 * t_second / t_cold:.1f}% of cold (goal < 10%)"),
            *[(f"  {s.name}", f"{s.seconds:8.1f} s", "") for s in second.steps],
            (f"pull of one blob ({size / mib:.0f} MiB), ironforge", f"{t_ours:8.2f} s",
             f"{size / mib / t_ours:.0f} MiB/s"),
            ("same blob, curl -o", f"{t_curl:8.2f} s", f"{size / mib / t_curl:.0f} MiB/s"),
            ("same blob, curl -o + sha256sum", f"{t_checked:8.2f} s", f"{size / mib / t_checked:.0f} MiB/s"),
            ("pull throughput ÷ curl", "", f"{t_curl / t_ours:.2f}x (goal >= 0.8x)"),
            ("pull throughput ÷ curl + sha256sum", "", f"{t_checked / t_ours:.2f}x"),
        ]
        print(f"\nbench/remote_cache.py: {args.recipe}, accel {accel.mode}")
        for a, b, c in rows:
            print(f"{a:<44} {b:>11}  {c}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
