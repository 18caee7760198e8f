"""Verification targets for the tiny guest (builder/runner/tinyguest.py), shared by the runner tests."""

from __future__ import annotations

from builder.runner.verify import VerifyTarget

TINY_CHECKS = ("arch", "virtio-root", "virtio-drivers")  # the tiny guest has no systemd


def tiny_target(tiny, **kw) -> VerifyTarget:
    """Direct kernel boot of the tiny guest: no injection (it brings its own probe), small and fast."""
    base = dict(image=tiny.disk, name="tiny", arch="x86_64", firmware="bios", memory_mb=256, kernel=tiny.kernel,
                initrd=tiny.initrd, append=tiny.append, inject=False, checks=TINY_CHECKS, timeout=180, stall=60)
    base.update(kw)
    return VerifyTarget(**base)
