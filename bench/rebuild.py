"""Scheduled rebuild benchmark: what a no-op `ironforge rebuild` costs against a cold one.

1. cold: `ironforge rebuild` of a Debian 12 amd64 recipe from a loopback mirror (tests/rebuild_mirror.py:
   Debian's real index re-signed with a throw-away key, pool files redirected to deb.debian.org)
   into an empty cache and output folder;
2. no-op: the same command with the mirror untouched ("up to date": keys computed, no stage run),
   over the cold one (goal < 5 %);
3. bumped: the mirror's InRelease re-signed with a later Date and one package upgraded: bootstrap
   and everything after it rebuilt, over the cold one.

    python bench/rebuild.py [--verify] [--changes FILE]

Network: deb.debian.org. Runtime ~10 min under TCG on a shared 2-core host (~15 with --verify).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from builder.cache.store import Store  # noqa: E402
from fetch_support import kill_agent, make_signer  # noqa: E402
from rebuild_mirror import STATE_A, STATE_B, Mirror, debian_index, write_recipe  # noqa: E402
from shared_cache import cache_root  # noqa: E402


def rebuild(tmp: Path, verify: bool) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "builder.cli", "--cache-dir", str(tmp / "cache"), "--output-dir",
           str(tmp / "output"), "--recipes-dir", str(tmp / "recipes"), "rebuild", "rebuild-e2e", "--json",
           *([] if verify else ["--no-verify"])]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"rebuild failed (exit {r.returncode}):\n{r.stderr[-4000:]}")
    return json.loads(r.stdout)[0], seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify", action="store_true", help="include the boot verification stage")
    ap.add_argument("--changes", type=Path, help="copy the bumped version's CHANGES.md here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ironforge-bench-rebuild-"))
    signer = make_signer(tmp / "key", "ironforge bench mirror <bench@test>")
    (tmp / "debs").mkdir()
    mirror = Mirror(signer, tmp / "debs", debian_index(Store(cache_root() / "engine")))
    try:
        mirror.serve(STATE_A)
        write_recipe(tmp / "recipes", ROOT, mirror)
        cold, t_cold = rebuild(tmp, args.verify)
        noop, t_noop = rebuild(tmp, args.verify)
        mirror.bump(STATE_B)
        bumped, t_bumped = rebuild(tmp, args.verify)
        assert (cold["status"], noop["status"], bumped["status"]) == ("published", "up-to-date", "published")
        if args.changes:
            shutil.copy(tmp / "output" / "rebuild-e2e" / bumped["version"] / "CHANGES.md", args.changes)
        print(f"| measure | seconds | ratio to cold |\n| --- | --- | --- |\n"
              f"| cold rebuild ({len(cold['stages'])} stages) | {t_cold:.1f} | 1 |\n"
              f"| no-op rebuild (up to date, {len(noop['stages'])} stages run) | {t_noop:.1f} | {t_noop / t_cold:.2%} |\n"
              f"| bumped InRelease ({sum(not s['hit'] for s in bumped['stages'])} stages rebuilt) | "
              f"{t_bumped:.1f} | {t_bumped / t_cold:.2f}x |")
    finally:
        mirror.close()
        kill_agent(signer)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
