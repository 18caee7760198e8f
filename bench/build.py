"""Bootstrap build benchmark: one run, a short table.

1. cold build: bootstrap + disk + drivers through the engine into an empty cache, over the time
   of plain `mmdebstrap` for the same package set (goal <= 1.5x);
2. warm rebuild: the same build again, every stage a cache hit, over the cold build (goal < 2%);
3. the whole verified build (customize, export and verify on top of the cold build) over its
   floor: plain `mmdebstrap` plus the guest's own boot (kernel start to the verify marker, as
   the guest counts it), which no builder that proves a boot can skip (goal <= 1.6x);
4. output size: the image flattened (qcow2, and compressed qcow2 as export makes it) against the
   bytes the guest's root filesystem uses (statvfs through libguestfs).

    python bench/build.py [--recipe debian-12-amd64] [--keep DIR]

Network: deb.debian.org. Runtime ~10-15 min under TCG on a shared 2-core host.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder import pipeline  # noqa: E402
from builder.cache.store import Store  # noqa: E402
from builder.engine import Engine  # noqa: E402
from builder.host.accel import choose  # noqa: E402
from builder.host.guestfs_session import Drive, session  # noqa: E402
from builder.linux import mmdebstrap  # noqa: E402
from builder.recipe import load  # noqa: E402
from builder.stages import bootstrap  # noqa: E402


def plain_mmdebstrap(spec: mmdebstrap.Spec, out: Path) -> float:
    cmd = ["mmdebstrap", f"--variant={spec.variant}", f"--architectures={spec.arch}",
           f"--include={','.join(spec.packages)}", spec.suite, str(out), spec.mirror]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def used_bytes(image: Path, accel) -> int:
    with session([Drive(image, "qcow2", readonly=True)], accel, what="bench statvfs") as g:
        g.mount_ro(g.inspect_os()[0], "/")
        sv = g.statvfs("/")
        return (sv["blocks"] - sv["bfree"]) * sv["frsize"]


def flatten(image: Path, out: Path, compress: bool) -> int:
    cmd = ["qemu-img", "convert", "-O", "qcow2", *(["-c"] if compress else []), str(image), str(out)]
    subprocess.run(cmd, check=True)
    return out.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="debian-12-amd64")
    ap.add_argument("--keep", type=Path, help="cache directory to use and keep (default: a temp dir)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    recipe = load(args.recipe)
    accel = choose()
    tmp = Path(tempfile.mkdtemp(prefix="ironforge-bench-"))
    root = args.keep or tmp / "cache"
    try:
        # the same package set the stage installs, with no hooks and no apt cache
        eng = Engine(Store(root), accel)
        from builder.stage import StageContext
        ctx = StageContext(recipe=recipe, accel=accel, store=eng.store, workdir=tmp,
                           log=logging.getLogger("bench"))
        spec = bootstrap.spec(ctx)
        t_plain = plain_mmdebstrap(spec, tmp / "plain.tar")
        (tmp / "plain.tar").unlink()

        t0 = time.monotonic()
        cold = eng.run(recipe, pipeline.base_image_stages(recipe))
        t_cold = time.monotonic() - t0
        t0 = time.monotonic()
        warm = eng.run(recipe, pipeline.base_image_stages(recipe))
        t_warm = time.monotonic() - t0
        assert all(s.hit for s in warm.steps), [(s.name, s.reason) for s in warm.steps]
        # the rest of the pipeline on top of the cold stages (hits now): what `make build` adds
        t0 = time.monotonic()
        e2e = eng.run(recipe, pipeline.stages_for(recipe, verify=True))
        t_e2e = t_cold + time.monotonic() - t0
        guest_boot = float(e2e.artifacts["verify"].data["guest_uptime"])
        floor = t_plain + guest_boot

        image = warm.artifacts["drivers"].image
        used = used_bytes(image, accel)
        flat = flatten(image, tmp / "flat.qcow2", compress=False)
        comp = flatten(image, tmp / "flat-c.qcow2", compress=True)
        chain = sum(a.image.stat().st_size for n, a in warm.artifacts.items() if "image" in a.files)

        mib = 1024 * 1024
        rows = [
            ("plain mmdebstrap", f"{t_plain:8.1f} s", ""),
            ("cold build (bootstrap+disk+drivers)", f"{t_cold:8.1f} s",
             f"{t_cold / t_plain:.2f}x mmdebstrap (goal <= 1.5x)"),
            *[(f"  {s.name}", f"{s.seconds:8.1f} s", "") for s in cold.steps],
            ("warm rebuild (all cache hits)", f"{t_warm:8.2f} s",
             f"{100 * t_warm / t_cold:.2f}% of cold (goal < 2%)"),
            ("cold verified build (every stage)", f"{t_e2e:8.1f} s",
             f"{t_e2e / floor:.2f}x mmdebstrap + the guest's own boot {guest_boot:.0f} s (goal <= 1.6x)"),
            *[(f"  {s.name}", f"{s.seconds:8.1f} s", "") for s in e2e.steps if not s.hit],
            ("guest root fs used (statvfs)", f"{used / mib:8.0f} MiB", ""),
            ("qcow2 chain (disk+drivers layers)", f"{chain / mib:8.0f} MiB", f"{chain / used:.2f}x used"),
            ("flattened qcow2", f"{flat / mib:8.0f} MiB", f"{flat / used:.2f}x used"),
            ("flattened qcow2, compressed", f"{comp / mib:8.0f} MiB", f"{comp / used:.2f}x used"),
        ]
        print(f"\nbench/build.py: {args.recipe}, accel {accel.mode}")
        for a, b, c in rows:
            print(f"{a:<40} {b:>13}  {c}")
        d = cold.artifacts["disk"].data.get("timings", {})
        if d:
            print(f"disk stage breakdown: {d}")
        v = e2e.artifacts["verify"].data
        print(f"verify breakdown: probe injection {v.get('inject_seconds')} s ({v.get('inject_via')}), "
              f"boot {v.get('boot_seconds')} s (guest's own {guest_boot:.1f} s), total {v.get('total_seconds')} s")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
