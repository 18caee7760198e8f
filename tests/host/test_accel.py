"""Accelerator choice on fake host trees, and on this very machine."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.host import accel as A


def fake_host(tmp_path: Path, *, kvm=True, flags="fpu vmx sse", modules=("kvm", "kvm_intel")) -> A.HostProbe:
    dev = tmp_path / "kvm"
    if kvm:
        dev.write_text("")
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    sysmod = tmp_path / "sys_module"
    sysmod.mkdir()
    for m in modules:
        (sysmod / m).mkdir()
    return A.HostProbe(dev_kvm=dev, cpuinfo=tmp_path / "cpuinfo", proc_modules=tmp_path / "no-modules",
                       sys_module=sysmod)


def test_real_kvm_host_uses_kvm(tmp_path):
    acc = A.detect(fake_host(tmp_path))
    assert acc.mode == "kvm" and "vmx" in acc.reason
    assert acc.qemu_args()[:2] == ["-accel", "kvm"]


def test_pvm_host_falls_back_to_tcg(tmp_path):
    acc = A.detect(fake_host(tmp_path, modules=("kvm", "kvm_pvm")))
    assert acc.mode == "tcg" and "kvm_pvm" in acc.reason


def test_pvm_listed_in_proc_modules(tmp_path):
    probe = fake_host(tmp_path, modules=())
    (tmp_path / "modules").write_text("kvm_pvm 12345 0 - Live 0x0\nkvm 1 1 kvm_pvm, Live 0x0\n")
    probe = A.HostProbe(probe.dev_kvm, probe.cpuinfo, tmp_path / "modules", probe.sys_module)
    assert A.detect(probe).mode == "tcg"


def test_no_dev_kvm(tmp_path):
    acc = A.detect(fake_host(tmp_path, kvm=False))
    assert acc.mode == "tcg" and "does not exist" in acc.reason


def test_no_virtualisation_flags(tmp_path):
    acc = A.detect(fake_host(tmp_path, flags="fpu sse2"))
    assert acc.mode == "tcg" and "vmx or svm" in acc.reason


def test_unwritable_dev_kvm(tmp_path):
    import dataclasses
    # root can open any file, so the permission answer is given as an unprivileged user would get it
    probe = dataclasses.replace(fake_host(tmp_path), access=lambda path, mode: False)
    acc = A.detect(probe)
    assert acc.mode == "tcg" and "not readable and writable" in acc.reason


def test_overrides(tmp_path):
    probe = fake_host(tmp_path)
    assert A.choose("tcg", env={}, probe=probe).mode == "tcg"
    assert A.choose(None, env={"IRONFORGE_ACCEL": "tcg"}, probe=probe).reason == "forced by IRONFORGE_ACCEL"
    assert A.choose("kvm", env={"IRONFORGE_ACCEL": "tcg"}, probe=probe).mode == "kvm"  # flag beats env
    assert A.choose("auto", env={"IRONFORGE_ACCEL": "tcg"}, probe=probe).mode == "kvm"
    with pytest.raises(UsageError):
        A.choose("hvf", env={}, probe=probe)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def test_this_machine_matches_its_facts():
    """The choice on this very host against the host's facts, read here independently: a PVM host
    (this kind of machine) gets TCG with the PVM reason; a KVM host without PVM (usable /dev/kvm,
    vmx or svm) gets KVM; anything else gets TCG. Every kind of host asserts its case."""
    acc = A.detect()
    usable = Path("/dev/kvm").exists() and os.access("/dev/kvm", os.R_OK | os.W_OK)
    pvm = Path("/sys/module/kvm_pvm").exists() or \
        any(line.split()[:1] == ["kvm_pvm"] for line in _read("/proc/modules").splitlines())
    hw = re.search(r"^flags\s*:.*\b(vmx|svm)\b", _read("/proc/cpuinfo"), re.M)
    if usable and pvm:
        assert acc.mode == "tcg" and "PVM host" in acc.reason and "kvm_pvm" in acc.reason
        assert acc.qemu_args()[:2] == ["-accel", "tcg,thread=multi"]
    elif usable and hw:
        assert acc.mode == "kvm" and hw.group(1) in acc.reason
        assert acc.qemu_args()[:2] == ["-accel", "kvm"]
    else:
        assert acc.mode == "tcg" and acc.reason


def test_peer_env_gives_external_libguestfs_tools_our_accelerator():
    """virt-v2v, run side by side as the peer, gets the same appliance accelerator as our sessions."""
    from builder.host.accel import Accel
    assert Accel("tcg", "t").peer_env() == {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
    assert Accel("kvm", "t").peer_env() == {"LIBGUESTFS_BACKEND": "direct"}
