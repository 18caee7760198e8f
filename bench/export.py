"""Export benchmark: each format's export over a plain ``qemu-img convert`` to the same format, in
the same run (goal <= 1.1x; OVA and GCE include their packing, vagrant its tar), then every format
at once with --jobs 2 over one after another.

A second ratio is over each format's *floor*: the plain convert plus what a shell script doing the
same job cannot skip either: the packing by the standard tool (GCE: ``tar --format=oldgnu -Sczf`` of
the raw; vagrant: tar with ``gzip -1``; OVA: a ustar tar of the disk) and ``sha256sum`` of the
result (SHA256SUMS must hold it; a raw or fixed-VHD disk is hashed over its whole virtual size,
holes included, and SHA-256 has no shortcut for runs of zeroes). Each time is the best of
--repeat runs: a shared host is noisy.

    python bench/export.py [--image IMG] [--size-mib 2048] [--data-mib 512] [--repeat 3] [--formats a,b]

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


def sh(cmd: list[str]) -> None:
    """A baseline command, started as ironforge starts its tools (builder.host.proc: a session of
    its own). With the kernel's autogroup scheduling a new session is its own CPU group, so on a
    loaded host a baseline run inside ours would get another share than the tool it is compared to."""
    subprocess.run(cmd, check=True, start_new_session=True, stdout=subprocess.DEVNULL)


def timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def pack(fmt: str, plain: Path) -> None:
    """The packing a format needs beyond the convert, by the standard tool (the floor's share)."""
    d = plain.parent / "pack"
    d.mkdir()
    try:
        if fmt == "gce":
            os.link(plain, d / "disk.raw")
            sh(["tar", "--format=oldgnu", "-Sczf", str(d / "x.tar.gz"), "-C", str(d), "disk.raw"])
        elif fmt == "vagrant-libvirt":
            os.link(plain, d / "box.img")
            sh(["tar", "-cf", str(d / "x.box"), "--use-compress-program=gzip -1", "-C", str(d), "box.img"])
        elif fmt == "ova":
            os.link(plain, d / "disk.vmdk")
            sh(["tar", "--format=ustar", "-cf", str(d / "x.ova"), "-C", str(d), "disk.vmdk"])
        else:
            return
        out = next(p for p in d.iterdir() if p.name.startswith("x."))
        sh(["sha256sum", str(out)])
    finally:
        shutil.rmtree(d)


def floor(fmt: str, src: Path, plain: Path) -> None:
    sh(["qemu-img", "convert", "-f", "qcow2", *PLAIN[fmt], str(src), str(plain)])
    if fmt in ("gce", "vagrant-libvirt", "ova"):
        pack(fmt, plain)
    else:
        sh(["sha256sum", str(plain)])
    plain.unlink()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", type=Path)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--data-mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", default=None, help="comma-separated subset (default: all)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ironforge-bench-export-"))
    try:
        src = args.image
        if src is None:
            src = tmp / "src.qcow2"
            make_image(src, args.size_mib, args.data_mib)
        fmts = [f for f in FORMATS if f != "libvirt"]
        if args.formats:
            fmts = [f for f in fmts if f in args.formats.split(",")]
        print(f"{'format':16} {'export s':>9} {'plain s':>8} {'ratio':>6} {'floor s':>8} {'÷ floor':>8}")
        for fmt in fmts:
            plain = tmp / f"plain.{fmt}"
            tp = tf = te = float("inf")
            for _ in range(args.repeat):
                tp = min(tp, timed(lambda: sh(["qemu-img", "convert", "-f", "qcow2", *PLAIN[fmt], str(src),
                                               str(plain)])))
                plain.unlink()
                tf = min(tf, timed(lambda: floor(fmt, src, plain)))
                te = min(te, timed(lambda: export_image(src, [fmt], tmp / "out", name="b")))
                shutil.rmtree(tmp / "out")
            print(f"{fmt:16} {te:9.2f} {tp:8.2f} {te / tp:6.2f} {tf:8.2f} {te / tf:8.2f}", flush=True)
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
