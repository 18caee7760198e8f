"""Export benchmark: each format's export over a plain ``qemu-img convert`` to the same format, in
the same run (goal <= 1.1x; OVA and GCE include their packing, vagrant its tar), then every format
at once with --jobs 2 over one after another.

    python bench/export.py [--image IMG] [--size-mib 2048] [--data-mib 512]

Without --image a source qcow2 is made: --data-mib of half random, half repeating data spread
over a --size-mib disk (an appliance image is mostly empty and partly compressible).
Runtime ~2-5 min on a shared 2-core host; numbers there are noisy (other work competes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.cache.store import sha256_file  # noqa: E402
from builder.exports import FORMATS, disks  # noqa: E402
from builder.exports.command import export_image  # noqa: E402

# format -> the plain qemu-img convert it is measured against
PLAIN = {"qcow2": ["-O", "qcow2", "-c"], "raw": ["-O", "raw"], "vmdk": ["-O", "vmdk", "-o", disks.VMDK_OPTIONS],
         "ova": ["-O", "vmdk", "-o", disks.VMDK_OPTIONS], "vhdx": ["-O", "vhdx"],
         "vhd-azure": ["-O", "vpc", "-o", "subformat=fixed,force_size=on"], "vdi": ["-O", "vdi"],
         "gce": ["-O", "raw"], "vagrant-libvirt": ["-O", "qcow2", "-c"]}


def make_image(path: Path, size_mib: int, data_mib: int) -> None:
    """A sparse raw file with data_mib written in 16 MiB chunks spread over the disk, alternately
    random and a repeating text pattern, converted to qcow2."""
    raw = path.with_suffix(".raw")
    chunk = 16
    n = max(1, data_mib // chunk)
    step = max(chunk, size_mib // n)
    pattern = (b"ironforge appliance data 0123456789 " * 30000)[:chunk << 20]
    with raw.open("wb") as fh:
        fh.truncate(size_mib << 20)
        for i in range(n):
            fh.seek(i * step << 20)
            fh.write(os.urandom(chunk << 20) if i % 2 == 0 else pattern)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
    raw.unlink()


def timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", type=Path)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--data-mib", type=int, default=512)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ironforge-bench-export-"))
    try:
        src = args.image
        if src is None:
            src = tmp / "src.qcow2"
            make_image(src, args.size_mib, args.data_mib)
        fmts = [f for f in FORMATS if f != "libvirt"]
        print(f"{'format':16} {'export s':>9} {'plain s':>8} {'ratio':>6} {'sha256 s':>9}")
        for fmt in fmts:
            plain = tmp / f"plain.{fmt}"
            tp = timed(lambda: subprocess.run(["qemu-img", "convert", "-f", "qcow2", *PLAIN[fmt], str(src),
                                               str(plain)], check=True))
            plain.unlink()
            res = {}
            te = timed(lambda: res.update(export_image(src, [fmt], tmp / "out", name="b")))
            # the part SHA256SUMS costs: it hashes every byte of the file, holes included
            th = timed(lambda: sha256_file(Path(res["files"][fmt])))
            print(f"{fmt:16} {te:9.2f} {tp:8.2f} {te / tp:6.2f} {th:9.2f}")
            shutil.rmtree(tmp / "out")
        serial = timed(lambda: export_image(src, fmts, tmp / "out", name="b", jobs=1))
        shutil.rmtree(tmp / "out")
        parallel = timed(lambda: export_image(src, fmts, tmp / "out", name="b", jobs=2))
        print(f"all formats: one after another {serial:.1f} s, --jobs 2 {parallel:.1f} s, "
              f"ratio {parallel / serial:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
