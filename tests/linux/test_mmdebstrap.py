from pathlib import Path

from builder.linux import mmdebstrap
from builder.settings import VIRTIO_MODULES


def _spec(**kw):
    base = dict(suite="bookworm", arch="i386", variant="apt", packages=("linux-image-686-pae", "sudo"),
                mirror="http://deb.debian.org/debian", initramfs_modules=VIRTIO_MODULES)
    base.update(kw)
    return mmdebstrap.Spec(**base)


def test_command_names_suite_arch_variant_packages_mirror_and_target():
    cmd = mmdebstrap.command(_spec(), Path("/x/rootfs.tar"))
    assert cmd[-3:] == ["bookworm", "/x/rootfs.tar", "http://deb.debian.org/debian"]
    assert "--variant=apt" in cmd and "--architectures=i386" in cmd and "--format=tar" in cmd
    assert "--include=linux-image-686-pae,sudo" in cmd
    assert f"--keyring={mmdebstrap.KEYRING}" in cmd


def test_virtio_modules_go_in_before_the_kernel_and_end_in_etc():
    cmd = mmdebstrap.command(_spec(), Path("/x/r.tar"))
    ess = next(c for c in cmd if c.startswith("--essential-hook="))
    for m in VIRTIO_MODULES:
        assert m in ess
    cust = next(c for c in cmd if c.startswith("--customize-hook="))
    assert "/etc/initramfs-tools/modules" in cust and "systemctl enable systemd-networkd" in cust


def test_apt_cache_hooks_only_when_asked():
    plain = mmdebstrap.command(_spec(), Path("/x/r.tar"))
    assert not any("sync-in" in c for c in plain)
    cached = mmdebstrap.command(_spec(apt_cache=Path("/c/apt")), Path("/x/r.tar"))
    assert "--skip=essential/unlink" in cached
    assert any(c.startswith("--setup-hook=sync-in /c/apt ") for c in cached)
    assert any(c.startswith("--customize-hook=sync-out /var/cache/apt/archives /c/apt") for c in cached)


def test_source_date_epoch_from_env_wins_over_release_date():
    s = _spec(source_date_epoch=1700000000)
    assert mmdebstrap.environment(s, {})["SOURCE_DATE_EPOCH"] == "1700000000"
    assert mmdebstrap.environment(s, {"SOURCE_DATE_EPOCH": "5"})["SOURCE_DATE_EPOCH"] == "5"
    assert "SOURCE_DATE_EPOCH" not in mmdebstrap.environment(_spec(), {})


def test_failure_quotes_the_last_lines(tmp_path, monkeypatch):
    # a real mmdebstrap run that fails at once: an unknown variant
    import pytest
    from builder.errors import BuildError
    with pytest.raises(BuildError) as e:
        mmdebstrap.run(_spec(variant="no-such-variant"), tmp_path / "r.tar")
    assert "mmdebstrap failed" in e.value.message and "invalid variant" in e.value.message


# --- bounded: a stalled mirror (a loopback server that accepts and never answers) --------------

import contextlib  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stalled_mirror():
    """A TCP port whose connections complete (kernel backlog) but never get a byte back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/debian"


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (session id, command line) of every live process."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            out[int(d.name)] = (int(fields[3]), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return out


def _our_session(target: Path, within: float = 60.0) -> int:
    """The session of the mmdebstrap writing ``target``, once it has children (apt) running."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        procs = _procs()
        # proc.spawn makes mmdebstrap a session leader (the parent python's argv names it too)
        sid = next((pid for pid, (sid, cmd) in procs.items()
                    if sid == pid and "mmdebstrap" in cmd and str(target) in cmd), None)
        # apt's http method waiting on the mirror: the process deepest in the tree
        if sid is not None and any(s == sid and "methods/http" in cmd for s, cmd in procs.values()):
            return sid
        time.sleep(0.1)
    raise AssertionError("mmdebstrap never got going")


def _session_gone(sid: int, within: float = 10.0) -> list[str]:
    deadline = time.monotonic() + within
    while True:
        left = [cmd[:100] for s, cmd in _procs().values() if s == sid]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_a_stalled_mirror_is_stopped_at_the_timeout_with_all_of_mmdebstraps_children(tmp_path, stalled_mirror):
    from builder.errors import ToolTimeout

    target = tmp_path / "r.tar"
    t0 = time.monotonic()
    with pytest.raises(ToolTimeout, match=r"still running after 4 s") as e:
        mmdebstrap.run(_spec(arch="amd64", mirror=stalled_mirror), target, timeout=4)
    assert time.monotonic() - t0 < 30
    assert "mmdebstrap_timeout" in e.value.hint
    assert not [cmd for _, cmd in _procs().values() if str(target) in cmd]


_PARENT = """
import sys
from pathlib import Path
from builder.linux import mmdebstrap
from builder.settings import VIRTIO_MODULES
mmdebstrap.run(mmdebstrap.Spec(suite="bookworm", arch="amd64", variant="apt", packages=("sudo",),
                               mirror=sys.argv[1], initramfs_modules=VIRTIO_MODULES), Path(sys.argv[2]))
"""


def test_sigkill_of_the_parent_leaves_no_mmdebstrap(tmp_path, stalled_mirror):
    target = tmp_path / "r.tar"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, stalled_mirror, str(target)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sid = _our_session(target)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        left = _session_gone(sid)
        assert not left, f"still running after the parent's SIGKILL: {left}"
    finally:
        parent.kill()
        parent.wait()
