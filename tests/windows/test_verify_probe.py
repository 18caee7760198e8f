"""Windows verification without Windows: the probe injected into a STAND-IN Windows disk and read
back (files and registry, with hivex); the ready marker and the Windows checks on scripted
stand-in COM1 lines; a verify run of the stand-in (it cannot boot: the failure is reported
through the same result, report and JUnit as Linux)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.host.accel import choose
from builder.host.guestfs_session import Drive, session
from builder.runner.checks import WINDOWS_CHECKS, resolve_checks, run_checks
from builder.runner.inject import inject_probe
from builder.runner.marker import parse_marker
from builder.runner.report import junit_xml
from builder.runner.verify import VerifyTarget, verify_image
from builder.runner.waiter import READY, BootWatch, WatchConfig
from builder.windows import setup_logs, verify_probe
from windows.standin_guest import SETUPERR, make_standin_windows

NONCE = "9c0ffee5"
FIRSTBOOT = r"cmd.exe /c %SystemRoot%\Setup\ironforge\firstboot.cmd"   # builder.windows.firstboot's CmdLine


@pytest.fixture(scope="module")
def accel():
    return choose()


@pytest.fixture(scope="module")
def standin(tmp_path_factory, accel) -> Path:
    """STAND-IN Windows 10 amd64 (build 19045), GPT/UEFI layout: ESP (vfat) + NTFS, with a first-boot
    driver installation queued in HKLM\\SYSTEM\\Setup as an injected image has it."""
    d = tmp_path_factory.mktemp("standin-win")
    return make_standin_windows(d / "win10.qcow2", accel, build="19045", arch="x86_64", firmware="uefi",
                                setup=(FIRSTBOOT, 2))


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# -- the probe text -------------------------------------------------------------------------------

def test_probe_files_are_crlf_ascii_and_use_only_inbox_tools():
    cmd, ps1 = verify_probe.cmd(), verify_probe.ps1(90)
    for text in (cmd, ps1):
        text.decode("ascii")
        assert b"\r\n" in text and b"\n" not in text.replace(b"\r\n", b"")
    assert b"WindowsPowerShell\\v1.0\\powershell.exe" in cmd and b"-ExecutionPolicy Bypass" in cmd
    assert b'type "%D%\\marker.txt" >COM1' in cmd and b"shutdown.exe\" /s /t 0 /f" in cmd
    assert b"MSSmBios_RawSMBiosTables" in ps1 and b"ironforge\\.nonce=" in ps1
    assert b"AddSeconds(90)" in ps1 and b"'viostor','vioscsi'" in ps1 and b"'netkvm'" in ps1
    assert b"Services\\$svc\\Enum" in ps1


# -- injected into the stand-in, read back -------------------------------------------------------

def test_stand_in_probe_injected_into_overlay_only_and_read_back(standin, accel, tmp_path):
    import hivex

    base_before = _sha(standin)
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(standin), str(overlay)],
                   check=True)
    facts = inject_probe(overlay, accel, settle_seconds=120, what="test inject")
    assert facts.os_type == "windows" and facts.arch == "x86_64" and facts.build == "19045"
    assert facts.firmware == "uefi"                       # GPT system disk
    assert _sha(standin) == base_before                   # the image itself is untouched

    out = tmp_path / "back"
    out.mkdir()
    with session([Drive(overlay, "qcow2", readonly=True)], accel, what="test read back") as g:
        g.mount_ro("/dev/sda2", "/")
        g.download("/Windows/System32/config/SYSTEM", str(out / "SYSTEM"))
        for name in (verify_probe.CMD_NAME, verify_probe.PS1_NAME):
            g.download(f"{verify_probe.PROBE_DIR}/{name}", str(out / name))
    assert (out / "probe.cmd").read_bytes() == verify_probe.cmd(FIRSTBOOT)   # the queued command runs first
    assert (out / "probe.ps1").read_bytes() == verify_probe.ps1(120)

    h = hivex.Hivex(str(out / "SYSTEM"))
    setup = h.node_get_child(h.root(), "Setup")
    values = {h.value_key(v): h.value_value(v) for v in h.node_values(setup)}
    assert values["CmdLine"] == (1, (verify_probe.CMDLINE + "\0").encode("utf-16-le"))
    assert values["SetupType"] == (4, (2).to_bytes(4, "little"))
    select = h.node_get_child(h.root(), "Select")
    assert h.value_value(h.node_get_value(select, "Current")) == (4, (1).to_bytes(4, "little"))  # untouched


def test_stand_in_setup_logs_copied_out_of_the_ntfs_partition(standin, accel, tmp_path):
    got = setup_logs.collect(standin, "qcow2", tmp_path / "panther", accel)
    names = sorted(p.name for p in got)
    assert names == ["sda2_WINDOWS._BT_Sources_Panther_diagerr.xml", "sda2_WINDOWS._BT_Sources_Panther_setupact.log",
                     "sda2_Windows_Panther_setupact.log", "sda2_Windows_Panther_setuperr.log"]
    assert (tmp_path / "panther/sda2_Windows_Panther_setuperr.log").read_bytes() == SETUPERR.encode()


# -- marker and checks on scripted COM1 lines ---------------------------------------------------------

def _line(**kw) -> str:
    f = dict(nonce=NONCE, src="smbios", arch="AMD64", build="19045", storage="viostor", net="netkvm",
             probe="1", uptime="41.5")
    f.update(kw)
    return "IRONFORGE-READY " + " ".join(f"{k}={v}" for k, v in f.items())


def test_stand_in_com1_stream_reaches_ready_and_all_checks_pass():
    bw = BootWatch(WatchConfig(nonce=NONCE, timeout=3600, stall=3600), 0.0)
    assert bw.feed("\r\n", 100.0) is None                      # the probe's blank line first
    o = bw.feed(_line() + "\r\n", 180.0)
    assert o.status == READY and o.marker.get("build") == "19045"
    res = run_checks(o.marker, list(WINDOWS_CHECKS), "x86_64", expected_build="19045", disk_bus="virtio-blk")
    assert [(c.name, c.ok) for c in res] == [(n, True) for n in WINDOWS_CHECKS]


@pytest.mark.parametrize("fields,bus,arch,failing", [
    (dict(storage="none"), "virtio-blk", "x86_64", "virtio-storage"),
    (dict(storage="viostor"), "virtio-scsi", "x86_64", "virtio-storage"),   # wrong bus' driver
    (dict(net="none"), "virtio-blk", "x86_64", "virtio-net"),
    (dict(build="22631"), "virtio-blk", "x86_64", "build"),
    (dict(arch="x86"), "virtio-blk", "x86_64", "arch"),
])
def test_stand_in_windows_checks_fail_with_the_reason(fields, bus, arch, failing):
    m = parse_marker(_line(**fields))
    res = {c.name: c for c in run_checks(m, list(WINDOWS_CHECKS), arch, expected_build="19045", disk_bus=bus)}
    assert [n for n, c in res.items() if not c.ok] == [failing]
    assert res[failing].detail


def test_x86_guest_arch_word_and_check_names():
    m = parse_marker(_line(arch="x86", storage="vioscsi"))
    res = run_checks(m, ["arch", "virtio-storage"], "i686", disk_bus="virtio-scsi")
    assert all(c.ok for c in res)
    assert resolve_checks(None, ["-virtio-net"], family="windows") == ["arch", "build", "virtio-storage"]
    with pytest.raises(Exception, match="unknown check 'systemd'"):
        resolve_checks(None, ["systemd"], family="windows")


# -- the verify command path on the stand-in ------------------------------------------------------

@pytest.mark.boot
def test_stand_in_verify_reports_through_result_and_junit(standin, accel, tmp_path):
    """The stand-in has no boot loader: the run must fail by timeout, with evidence, as a result."""
    before = _sha(standin)
    r = verify_image(VerifyTarget(image=standin, name="standin-win10", timeout=25, stall=25), tmp_path / "out",
                     accel=accel)
    assert r.status == "failed" and r.reason == "timeout"
    assert r.arch == "x86_64" and r.firmware == "uefi" and r.inject_seconds
    assert Path(r.serial_log).exists() and r.screenshot and Path(r.screenshot).exists()
    assert _sha(standin) == before and not list((tmp_path / "out").glob(".verify-*"))
    xml = junit_xml([r])
    assert 'failures="1"' in xml and 'type="timeout"' in xml and "standin-win10" in xml


# -- what was queued in HKLM\SYSTEM\Setup before the probe ----------------------------------------


def test_queued_first_boot_runs_before_the_probe():
    assert verify_probe.previous_command("", 0) is None and verify_probe.previous_command(None, None) is None
    assert verify_probe.previous_command(verify_probe.CMDLINE, 2) is None          # our own, from a re-run
    prev = verify_probe.previous_command(FIRSTBOOT + "\r\n", 2)
    assert prev == FIRSTBOOT
    lines = verify_probe.cmd(prev).decode().split("\r\n")
    assert lines.index(FIRSTBOOT) < next(i for i, x in enumerate(lines) if "powershell.exe" in x)
    assert FIRSTBOOT not in verify_probe.cmd().decode()


@pytest.mark.parametrize("cmdline,setup_type", [(r"oobe\windeploy.exe", 1), ("cmd /c x.cmd", 1)])
def test_generalized_image_is_refused(cmdline, setup_type):
    with pytest.raises(verify_probe.PendingSetup, match="generalized") as ei:
        verify_probe.previous_command(cmdline, setup_type)
    assert ei.value.exit_code == 1 and ei.value.hint


# -- on wininject's phony disks (generated hives; shared, cached set) -----------------------------

@pytest.fixture(scope="module")
def phony(accel):
    from shared_cache import cache_root
    from windows.phony import phony_set

    cache = cache_root() / "windows"
    cache.mkdir(parents=True, exist_ok=True)
    return phony_set(cache, accel=accel)


def _overlay(base: Path, tmp: Path) -> Path:
    overlay = tmp / f"{base.stem}-overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)],
                   check=True)
    return overlay


def test_phony_32bit_bios_guest_facts(phony, accel, tmp_path):
    """32-bit Windows 10 on MBR: arch from cmd.exe's PE header, BIOS from the partition table."""
    facts = inject_probe(_overlay(phony["win10-x86"], tmp_path), accel, what="test inject x86")
    assert (facts.os_type, facts.arch, facts.firmware, facts.build) == ("windows", "i386", "bios", "19045")


def test_phony_sysprepped_image_is_refused(phony, accel, tmp_path):
    with pytest.raises(verify_probe.PendingSetup, match="SetupType=1"):
        inject_probe(_overlay(phony["sysprepped"], tmp_path), accel, what="test inject sysprepped")
