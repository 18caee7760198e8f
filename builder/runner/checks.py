"""Checks run on the facts a guest reported in its ready marker; each reported by name with detail."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from builder import arch as archmod
from builder.errors import UsageError
from builder.runner.marker import Marker

REQUIRED_VIRTIO = ("virtio_blk", "virtio_net")
# Windows guests report build and the virtio drivers bound (builder.windows.verify_probe)
WINDOWS_CHECKS = ("arch", "build", "virtio-storage", "virtio-net")
STORAGE_DRIVER = {"virtio-blk": "viostor", "virtio-scsi": "vioscsi"}


def checks_for(family: str) -> tuple[str, ...]:
    return WINDOWS_CHECKS if family == "windows" else CHECKS


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_checks(base: list[str] | tuple[str, ...] | None, overrides: list[str] | tuple[str, ...] = (),
                   family: str = "linux") -> list[str]:
    """``base`` (recipe verify.checks) adjusted by CLI ``--check NAME`` (add) / ``--check -NAME`` (relax)."""
    known = checks_for(family)
    chosen = list(known if base is None else base)
    for o in overrides:
        name = o[1:] if o.startswith("-") else o.lstrip("+")
        if name not in known:
            raise UsageError(f"--check {o}: unknown check {name!r} (known: {', '.join(known)})")
        if o.startswith("-"):
            chosen = [c for c in chosen if c != name]
        elif name not in chosen:
            chosen.append(name)
    for c in chosen:
        if c not in known:
            raise UsageError(f"verify.checks: unknown check {c!r} (known: {', '.join(known)})")
    return chosen


def _arch(m: Marker, expected: str | None) -> CheckResult:
    got = m.get("arch")
    if not expected:
        return CheckResult("arch", False, f"guest reports {got}; no expected architecture known")
    try:
        ok = archmod.normalise(got) == archmod.normalise(expected)
    except ValueError:
        ok = False
    return CheckResult("arch", ok, f"guest {got}, expected {archmod.normalise(expected)}")


def _virtio_root(m: Marker, _expected) -> CheckResult:
    root, disks = m.get("root"), m.list("rootdisks")
    ok = root.startswith("/dev/vd") or any(d.startswith("vd") for d in disks)
    detail = f"root on {root}" + (f" (disks {','.join(disks)})" if disks and not root.startswith("/dev/vd") else "")
    return CheckResult("virtio-root", ok, detail if ok else detail + ", not a virtio-blk device (/dev/vd*)")


def _virtio_drivers(m: Marker, _expected) -> CheckResult:
    bound = m.list("virtio")
    missing = [d for d in REQUIRED_VIRTIO if d not in bound]
    if missing:
        return CheckResult("virtio-drivers", False, f"not bound: {', '.join(missing)} (bound: {', '.join(bound) or 'none'})")
    return CheckResult("virtio-drivers", True, f"bound: {', '.join(bound)}")


def _systemd(m: Marker, _expected) -> CheckResult:
    state, failed = m.get("state"), m.list("failed")
    if state == "running":
        return CheckResult("systemd", True, "running")
    detail = f"state {state or 'unknown'}"
    if failed:
        detail += f"; failed units: {', '.join(failed)}"
    elif state == "none":
        detail += " (no systemd in this guest)"
    return CheckResult("systemd", False, detail)


_RUN: dict[str, Callable[[Marker, str | None], CheckResult]] = {
    "arch": _arch, "virtio-root": _virtio_root, "virtio-drivers": _virtio_drivers, "systemd": _systemd,
}
# The one list of check names (verify.checks in the settings table takes it from here): a name
# exists exactly when it has an implementation.
CHECKS = tuple(_RUN)
DEFAULT_CHECKS = CHECKS


def _build(m: Marker, expected: str | None) -> CheckResult:
    got = m.get("build")
    if not expected:
        return CheckResult("build", False, f"guest reports build {got or 'none'}; no expected build known")
    ok = got == str(expected)
    return CheckResult("build", ok, f"guest build {got or 'none'}, expected {expected}")


def _windows_driver(name: str, key: str, wanted: str | None, m: Marker) -> CheckResult:
    bound = m.list(key)
    if wanted is None:
        return CheckResult(name, bool(bound), f"bound: {', '.join(bound)}" if bound else "no virtio driver bound")
    if wanted in bound:
        return CheckResult(name, True, f"{wanted} bound")
    return CheckResult(name, False, f"{wanted} not bound (bound: {', '.join(bound) or 'none'}); the guest "
                                    "is on emulated hardware or the driver failed to start")


def run_checks(marker: Marker, names: list[str], expected_arch: str | None, *,
               expected_build: str | None = None, disk_bus: str | None = None) -> list[CheckResult]:
    """``expected_build``/``disk_bus`` feed the Windows checks (build; viostor or vioscsi)."""
    out = []
    for n in names:
        if n == "build":
            out.append(_build(marker, expected_build))
        elif n == "virtio-storage":
            out.append(_windows_driver(n, "storage", STORAGE_DRIVER.get(disk_bus or ""), marker))
        elif n == "virtio-net":
            out.append(_windows_driver(n, "net", "netkvm", marker))
        else:
            out.append(_RUN[n](marker, expected_arch))
    return out
