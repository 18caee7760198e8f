"""What an image holds, read through libguestfs by the stage that last wrote it, in that
stage's own launch: the installed kernels, each initramfs's module listing, each kernel's
built-in modules, and the guest facts for the manifest.

Why: the drivers stage only has to *check* the initramfs on the common path (the bootstrap
already lists the virtio modules before the kernel's postinst builds it). Reading the listing
in the editing stage's launch costs a few seconds (the initrd is downloaded and listed by the
host's lsinitramfs); a launch of its own costs 20-40 s under TCG. The report belongs to the
artifact whose image it describes, and artifacts are immutable, so a later stage that trusts it
is reading exactly the bytes it was taken from.
"""

from __future__ import annotations

from typing import Any

from builder.linux import guestfacts, initramfs

VERSION = 1


def take(g) -> dict[str, Any]:
    """Read the report from a guest whose filesystems are mounted (no extra launch)."""
    kernels = initramfs.installed_kernels(g)
    modules = {}
    for v in kernels:
        modules[v] = {"initramfs": sorted(initramfs.listing(g, v)),
                      "builtin": sorted(initramfs.builtin_modules(g, v))}
    return {"version": VERSION, "kernels": kernels, "modules": modules,
            "facts": guestfacts.collect(g, kernels)}


def usable(report: Any) -> bool:
    """A report this code can read (an artifact from an older ironforge may carry none)."""
    return (isinstance(report, dict) and report.get("version") == VERSION
            and bool(report.get("kernels")) and isinstance(report.get("modules"), dict)
            and all(v in report["modules"] for v in report["kernels"]))


def check(report: dict[str, Any], wanted: list[str]) -> dict[str, Any] | None:
    """The drivers stage's result when every wanted module is in every kernel's initramfs (or
    built in) by the report; None when one is missing, so the caller must launch and fix it."""
    per_kernel = {}
    for v in report["kernels"]:
        km = initramfs.classify(v, wanted, set(report["modules"][v]["initramfs"]),
                                set(report["modules"][v]["builtin"]))
        if km.missing:
            return None
        per_kernel[v] = {"in_initramfs": km.present, "builtin": km.builtin}
    return {"kernels": list(report["kernels"]), "added_to_config": [], "rebuilt": [],
            "per_kernel": per_kernel}
