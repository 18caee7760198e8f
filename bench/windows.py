"""Offline driver injection against virt-v2v 2.2, on the same PHONY guest, in the same run.

1. makes (or reuses from the test cache) the phony Windows 10 amd64 disk and the STAND-IN
   virtio-win ISO (tests/windows/phony.py, tests/windows/standin_virtio_win.py);
2. times `ironforge inject-drivers IMG --virtio-win ISO --output OUT` (the whole command as a
   user runs it: probe, copy into a new qcow2, one libguestfs launch, records);
3. times `virt-v2v -i disk IMG -o local -os DIR` with VIRTIO_WIN=the same ISO (the whole
   conversion: inspection, the same kind of edits, its copy);
and prints ironforge ÷ virt-v2v (goal <= 0.5). Both run under the same accelerator (TCG here).

    python bench/windows.py [--runs 1]

Runtime here: ~5-8 min under TCG on a shared 2-core host (virt-v2v is most of it).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this script is named windows.py: its own folder on sys.path would shadow tests/windows/
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from builder.host.accel import choose  # noqa: E402
from shared_cache import cache_root  # noqa: E402
from windows import phony, standin_virtio_win  # noqa: E402
from windows.v2v_side_by_side import virt_v2v  # noqa: E402


def ours(disk: Path, iso: Path, out: Path) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "builder.cli", "-q", "inject-drivers", str(disk),
                    "--virtio-win", str(iso), "--output", str(out)], cwd=ROOT, check=True)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    accel = choose(None)
    cache = cache_root() / "windows"
    cache.mkdir(parents=True, exist_ok=True)
    _tree, iso = standin_virtio_win.standin(cache)
    disk = phony.phony_set(cache, accel=accel)["win10-amd64"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-windows-") as tmp:
        for i in range(args.runs):
            work = Path(tmp) / str(i)
            work.mkdir()
            src = phony.copy_disk(disk, work / "win10-amd64.qcow2")
            a = ours(src, iso, work / "ours.qcow2")
            out = work / "v2v"
            out.mkdir()
            _conv, b = virt_v2v(src, iso, out, accel.peer_env())
            rows.append((a, b))
            shutil.rmtree(work, ignore_errors=True)
    print(f"accelerator: {accel.mode} ({accel.reason})")
    print(f"{'run':>3} {'inject-drivers s':>17} {'virt-v2v s':>11} {'ratio':>6}")
    for i, (a, b) in enumerate(rows, 1):
        print(f"{i:>3} {a:>17.1f} {b:>11.1f} {a / b:>6.2f}")
    ratio = sum(a for a, _ in rows) / sum(b for _, b in rows)
    print(f"inject-drivers / virt-v2v = {ratio:.2f} (goal <= 0.50): {'met' if ratio <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
