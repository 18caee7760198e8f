"""Accelerator choice on fake host trees, and on this very machine."""

from __future__ import annotations

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
    assert "LIBGUESTFS_BACKEND_SETTINGS" not in acc.libguestfs_env()


def test_pvm_host_falls_back_to_tcg(tmp_path):
    acc = A.detect(fake_host(tmp_path, modules=("kvm", "kvm_pvm")))
    assert acc.mode == "tcg" and "kvm_pvm" in acc.reason
    assert acc.libguestfs_env()["LIBGUESTFS_BACKEND_SETTINGS"] == "force_tcg"


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


def test_this_machine_matches_its_facts():
    """On a PVM host (this kind of machine) the choice is TCG, and the reason says why."""
    acc = A.detect()
    if Path("/sys/module/kvm_pvm").exists():
        assert acc.mode == "tcg" and "PVM" in acc.reason
    elif not Path("/dev/kvm").exists():
        assert acc.mode == "tcg"
