"""Checks run on the facts a guest reported in its ready marker; each reported by name with detail."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from builder import arch as archmod
from builder.errors import UsageError
from builder.runner.marker import Marker

REQUIRED_VIRTIO = ("virtio_blk", "virtio_net")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_checks(base: list[str] | tuple[str, ...] | None, overrides: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``base`` (recipe verify.checks) adjusted by CLI ``--check NAME`` (add) / ``--check -NAME`` (relax)."""
    chosen = list(DEFAULT_CHECKS if base is None else base)
    for o in overrides:
        name = o[1:] if o.startswith("-") else o.lstrip("+")
        if name not in CHECKS:
            raise UsageError(f"--check {o}: unknown check {name!r} (known: {', '.join(CHECKS)})")
        if o.startswith("-"):
            chosen = [c for c in chosen if c != name]
        elif name not in chosen:
            chosen.append(name)
    for c in chosen:
        if c not in CHECKS:
            raise UsageError(f"verify.checks: unknown check {c!r} (known: {', '.join(CHECKS)})")
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


def run_checks(marker: Marker, names: list[str], expected_arch: str | None) -> list[CheckResult]:
    return [_RUN[n](marker, expected_arch) for n in names]
