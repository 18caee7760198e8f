"""The one libguestfs session helper: the accelerator reaches the handle (no launch needed);
guest commands under a time limit, in one real libguestfs launch over a tiny scratch disk whose
root holds the host's own sh, timeout, sleep, date and tail (with their libraries)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from builder.errors import BuildError, GuestfsError
from builder.host.accel import Accel, choose
from builder.host.guestfs_session import Drive, guest_command, guest_sh, new_handle, session

TOOLS = ("sh", "timeout", "sleep", "date", "tail", "printf", "cat")


def _root_tree(root: Path) -> None:
    files: set[Path] = set()
    for tool in TOOLS:
        exe = Path(shutil.which(tool)).resolve()
        files.add(exe)
        out = subprocess.run(["ldd", str(exe)], capture_output=True, text=True).stdout
        for word in out.split():
            if word.startswith("/"):
                files.add(Path(word))
                files.add(Path(word).resolve())
    for f in files:
        dest = root / f.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    for tool in TOOLS:   # every tool on the PATH the appliance's chroot uses, under its own name
        exe = Path(shutil.which(tool)).resolve()
        for d in ("bin", "usr/bin"):
            link = root / d / tool
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(exe)
    for d in ("tmp", "dev", "proc", "sys"):   # the appliance binds its own /dev, /proc, /sys here
        (root / d).mkdir(exist_ok=True)


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    """The module's one launch."""
    tmp = tmp_path_factory.mktemp("guestcmd")
    _root_tree(tmp / "root")
    disk = tmp / "root.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tmp / "root"), str(disk), "64M"], check=True)
    with session([Drive(disk, format="raw", readonly=True)], choose(), what="guest command test") as h:
        h.mount_ro("/dev/sda", "/")
        yield h


def test_a_guest_command_over_its_limit_is_stopped_with_a_clear_error(g):
    t0 = time.monotonic()
    with pytest.raises(BuildError) as ei:
        guest_command(g, ["sleep", "120"], limit=3, what="update-initramfs in the image")
    assert time.monotonic() - t0 < 60
    assert ei.value.message == "update-initramfs in the image: still running inside the image after 3 s; stopped it"
    assert not isinstance(ei.value, GuestfsError) and "raise the limit" in ei.value.hint


def test_a_command_that_ignores_term_is_killed(g):
    with pytest.raises(BuildError, match=r"trap '' TERM.*after 2 s"):
        guest_sh(g, "trap '' TERM; sleep 120", limit=2)


def test_within_the_limit_output_and_failures_are_unchanged(g):
    assert guest_command(g, ["printf", "a\\nb\\n"], limit=30) == "a\nb\n"
    # a command that itself exits 124 quickly is a failure, not a timeout
    with pytest.raises(GuestfsError) as ei:
        guest_sh(g, "echo own-error >&2; exit 124", limit=30)
    assert "still running" not in ei.value.message and "own-error" in ei.value.message


def test_customize_commands_get_the_limit(g):
    from builder.linux.customize import check_in_guest

    assert check_in_guest(g, "echo fine", "a quick step", limit=30).output == "fine"
    with pytest.raises(BuildError, match=r"customize.commands\[0\]: still running inside the image after 2 s"):
        check_in_guest(g, "sleep 120", "customize.commands[0]", limit=2)


def test_a_non_kvm_accel_gives_a_force_tcg_handle():
    h = new_handle(Accel("tcg", "test"))
    try:
        assert h.get_backend() == "direct"
        assert "force_tcg" in h.get_backend_settings()
    finally:
        h.close()


def test_a_kvm_accel_leaves_the_appliance_on_kvm():
    h = new_handle(Accel("kvm", "test"))
    try:
        assert h.get_backend() == "direct" and "force_tcg" not in h.get_backend_settings()
    finally:
        h.close()
