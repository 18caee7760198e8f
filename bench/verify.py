"""Verification benchmark: how much slower is a verdict than the guest's own boot, and what does a
fleet gain from parallel guests.

1. one image: wall time from QEMU start to verdict over the guest's own boot time (kernel start to
   the ready marker, from the uptime the probe reports) — goal <= 1.1x. Also reported: the probe
   injection (one libguestfs launch) and the total including it;
2. fleet: 2 images verified at --parallel 2 over --parallel 1 (throughput ratio, ideal 2.0 on 2 free cores).

    python bench/verify.py                       # the tiny self-test guest (host kernel + busybox)
    python bench/verify.py --full                # tiny guest booted from its own disk (SYSLINUX) + injection
    python bench/verify.py IMAGE [--arch x86_64] [--firmware bios]   # a real image, e.g. output/*/x.qcow2

No network. The tiny guest takes ~1 min in all; a Debian image ~10 min under TCG.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.host.accel import choose  # noqa: E402
from builder.runner import guest_probe, tinyguest  # noqa: E402
from builder.runner.verify import VerifyTarget, verify_fleet, verify_image  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", type=Path, help="image to verify (default: the tiny guest)")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--firmware", default="auto")
    ap.add_argument("--full", action="store_true", help="tiny guest from its own disk, with probe injection")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--no-fleet", action="store_true")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(message)s")
    accel = choose()

    with tempfile.TemporaryDirectory(prefix="ironforge-bench-verify-") as tmp:
        tmp = Path(tmp)
        if args.image:
            target = VerifyTarget(image=args.image, arch=args.arch, firmware=args.firmware, timeout=args.timeout)
            what = str(args.image)
        else:
            g = tinyguest.build(tmp, pretend_systemd=args.full, bootable_disk=args.full)
            checks = ("arch", "virtio-root", "virtio-drivers")
            if args.full:
                target = VerifyTarget(image=g.bootable_disk, name="tiny", arch="x86_64", firmware="bios",
                                      memory_mb=256, checks=checks, timeout=args.timeout, stall=120)
                what = "tiny guest, SYSLINUX disk + probe injection"
            else:
                target = VerifyTarget(image=g.disk, name="tiny", arch="x86_64", firmware="bios", memory_mb=256,
                                      kernel=g.kernel, initrd=g.initrd, append=g.append, inject=False,
                                      checks=checks, timeout=args.timeout, stall=120)
                what = "tiny guest, direct kernel boot"

        print(accel.notice())
        print(f"image: {what}")
        r = verify_image(target, tmp / "one", accel=accel)
        if not r.ok:
            print(f"verification failed: {r.message}")
            return 1
        ratio = r.boot_seconds / r.guest_uptime
        print("\n1. time to verdict vs the guest's own boot")
        print(f"   guest boot (kernel start -> marker, guest clock) {r.guest_uptime:8.2f} s")
        print(f"   QEMU start -> verdict (wall)                     {r.boot_seconds:8.2f} s")
        print(f"   ratio                                            {ratio:8.2f} x   (goal <= 1.10)")
        print(f"   of which before the kernel (firmware, loader, decompression, QEMU start) "
              f"~{r.boot_seconds - r.guest_uptime:.2f} s")
        report = guest_probe.analysis(Path(r.serial_log).read_text(errors="replace")) if r.serial_log else []
        if report:
            print("   the guest's own account (systemd-analyze, from the serial log):")
            for line in report:
                print(f"     {line}")
        if r.inject_seconds:
            print(f"   probe injection (libguestfs launch)              {r.inject_seconds:8.2f} s")
            print(f"   total incl. injection and overlay                {r.total_seconds:8.2f} s "
                  f"({r.total_seconds / r.guest_uptime:.2f} x)")

        if not args.no_fleet:
            targets = [dataclasses.replace(target, name=f"{target.label}-{i}") for i in (1, 2)]
            walls = {}
            for parallel in (1, 2):
                t0 = time.monotonic()
                res = verify_fleet(targets, parallel=parallel, accel=accel, out_dir=tmp / f"fleet{parallel}")
                walls[parallel] = time.monotonic() - t0
                if not all(x.ok for x in res):
                    print(f"fleet at parallel {parallel} failed: {[x.message for x in res]}")
                    return 1
            print("\n2. fleet of 2 images")
            for p in (1, 2):
                print(f"   --parallel {p}: {walls[p]:7.2f} s  ({2 / walls[p] * 60:5.2f} images/min)")
            print(f"   throughput parallel 2 over parallel 1: {walls[1] / walls[2]:.2f} x  (ideal 2.00)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
