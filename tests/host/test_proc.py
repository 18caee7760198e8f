"""builder.host.proc with real processes: timeouts, process groups, death with the parent, rlimits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.errors import SignatureError, ToolFailed, ToolTimeout
from builder.host import proc

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def wait_for_file(path: Path, seconds: float = 20.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def test_hung_tool_is_stopped_at_its_timeout_with_its_grandchildren(tmp_path):
    pids = tmp_path / "pids"
    # the shell starts a grandchild in the background and then hangs itself
    script = f"sleep 300 & echo $! > {pids}.tmp; echo $$ >> {pids}.tmp; mv {pids}.tmp {pids}; sleep 300"
    t0 = time.monotonic()
    with pytest.raises(ToolTimeout, match=r"hang test: still running after 1 s"):
        proc.run(["sh", "-c", script], what="hang test", timeout=1)
    assert time.monotonic() - t0 < 10
    grandchild, child = (int(x) for x in wait_for_file(pids).split())
    assert gone_within(child, 5), "the tool survived its timeout"
    assert gone_within(grandchild, 5), "the tool's background child survived its timeout"


def test_timeout_error_kind_is_the_callers():
    with pytest.raises(SignatureError, match="still running"):
        proc.run(["sleep", "30"], what="gpgv", timeout=0.5, timeout_error=SignatureError)


def test_failure_quotes_the_tools_output_and_success_returns_it():
    with pytest.raises(ToolFailed, match=r"exit code 3\): boom") as exc:
        proc.run(["sh", "-c", "echo boom >&2; exit 3"], what="fail test", timeout=10)
    assert exc.value.returncode == 3
    res = proc.run(["sh", "-c", "cat; echo out"], what="ok", timeout=10, input="in\n")
    assert res.stdout == "in\nout\n"


def test_leftovers_of_a_finished_tool_are_killed(tmp_path):
    """A tool that exits but leaves a child behind (stdout closed, so run returns) takes it along."""
    pidf = tmp_path / "left"
    proc.run(["sh", "-c", f"sleep 300 >/dev/null 2>&1 & echo $! > {pidf}"], what="leaver", timeout=10)
    assert gone_within(int(pidf.read_text()), 5)


_PARENT = """
import sys
from builder.host import proc
proc.run(["sh", "-c", "sleep 300 & echo $! > " + sys.argv[1] + ".tmp; echo $$ >> " + sys.argv[1]
          + ".tmp; mv " + sys.argv[1] + ".tmp " + sys.argv[1] + "; sleep 300"], what="long", timeout=600)
"""


def test_sigkill_of_the_parent_leaves_no_child_nor_grandchild(tmp_path):
    pids = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(pids)], cwd=ROOT)
    try:
        grandchild, child = (int(x) for x in wait_for_file(pids).split())
        assert alive(child) and alive(grandchild)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert gone_within(child, 5), f"tool {child} outlived its SIGKILLed parent"
        assert gone_within(grandchild, 5), f"the tool's child {grandchild} outlived the SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait()


def test_streaming_child_is_bounded(tmp_path):
    p = proc.spawn(["sh", "-c", "echo first; sleep 300"], stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    with proc.bounded(p, 1) as deadline:
        lines = list(p.stdout)
    assert lines == ["first\n"]
    assert deadline.expired and time.monotonic() - t0 < 10
    assert not alive(p.pid)


def test_bounded_kills_the_group_on_an_exception():
    p = proc.spawn(["sleep", "300"])
    with pytest.raises(RuntimeError):
        with proc.bounded(p, 600):
            raise RuntimeError("caller failed")
    assert p.returncode == -signal.SIGKILL


def test_rlimits_apply():
    """A CPU-time limit of 1 s kills a busy loop by SIGKILL/SIGXCPU, well before its wall timeout."""
    res = proc.run(["sh", "-c", "while :; do :; done"], what="spin", timeout=60, check=False,
                   limits=proc.Limits(cpu_seconds=1))
    assert res.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    res = proc.run(["sh", "-c", "head -c 2000000 /dev/zero > big"], what="fsize", timeout=60, check=False,
                   limits=proc.Limits(file_size=1 << 20), cwd="/tmp")
    assert res.returncode != 0
