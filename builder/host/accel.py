"""Choose the accelerator (KVM or TCG) once per process, with a reason a person can read.

Testing for /dev/kvm is not enough: a PVM host (``kvm_pvm`` module) exposes /dev/kvm but
runs only PVM-patched guests; unmodified guest kernels hang under ``-enable-kvm``. And a
nested VM without vmx/svm flags has a /dev/kvm that cannot run anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from builder.errors import UsageError

MODES = ("kvm", "tcg")


@dataclass(frozen=True)
class Accel:
    mode: str  # "kvm" or "tcg"
    reason: str

    @property
    def kvm(self) -> bool:
        return self.mode == "kvm"

    def peer_env(self) -> dict[str, str]:
        """Environment for an external libguestfs tool (virt-v2v, run side by side as the peer) so
        its appliance uses the same accelerator. Our own sessions set this on the handle instead
        (builder.host.guestfs_session.new_handle): no process-wide state."""
        env = {"LIBGUESTFS_BACKEND": "direct"}
        if not self.kvm:
            env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
        return env

    def qemu_args(self) -> list[str]:
        if self.kvm:
            return ["-accel", "kvm", "-cpu", "host"]
        # multi-threaded TCG uses both cores for SMP guests
        return ["-accel", "tcg,thread=multi"]

    def notice(self) -> str:
        return f"accelerator: {self.mode.upper()} ({self.reason})"


@dataclass(frozen=True)
class HostProbe:
    """The files accel detection reads; tests point it at a fake tree."""

    dev_kvm: Path = Path("/dev/kvm")
    cpuinfo: Path = Path("/proc/cpuinfo")
    proc_modules: Path = Path("/proc/modules")
    sys_module: Path = Path("/sys/module")
    access: Callable[[Path, int], bool] = os.access  # tests pass a stand-in: root can open anything


def _loaded_modules(probe: HostProbe) -> set[str]:
    names: set[str] = set()
    try:
        for line in probe.proc_modules.read_text().splitlines():
            if line.strip():
                names.add(line.split()[0])
    except OSError:
        pass
    try:
        names.update(p.name for p in probe.sys_module.iterdir())
    except OSError:
        pass
    return names


def _cpu_flags(probe: HostProbe) -> set[str]:
    flags: set[str] = set()
    try:
        for line in probe.cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    return flags


def detect(probe: HostProbe = HostProbe()) -> Accel:
    """KVM only where it really works; otherwise TCG and why."""
    if not probe.dev_kvm.exists():
        return Accel("tcg", f"{probe.dev_kvm} does not exist")
    if not probe.access(probe.dev_kvm, os.R_OK | os.W_OK):
        return Accel("tcg", f"{probe.dev_kvm} is not readable and writable by this user")
    modules = _loaded_modules(probe)
    if "kvm_pvm" in modules:
        return Accel("tcg", "this is a PVM host (kvm_pvm module loaded): unmodified guest kernels hang under KVM")
    flags = _cpu_flags(probe)
    if not flags & {"vmx", "svm"}:
        return Accel("tcg", "the CPU reports no hardware virtualisation (no vmx or svm flag)")
    return Accel("kvm", f"{probe.dev_kvm} usable, {'vmx' if 'vmx' in flags else 'svm'} present")


def choose(override: str | None = None, env: dict[str, str] | None = None,
           probe: HostProbe = HostProbe()) -> Accel:
    """--accel beats IRONFORGE_ACCEL beats detection."""
    env = os.environ if env is None else env
    for source, value in (("--accel", override), ("IRONFORGE_ACCEL", env.get("IRONFORGE_ACCEL"))):
        if value:
            value = value.strip().lower()
            if value == "auto":
                break
            if value not in MODES:
                raise UsageError(f"{source}: expected one of kvm, tcg, auto; got {value!r}")
            return Accel(value, f"forced by {source}")
    return detect(probe)
