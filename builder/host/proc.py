"""The one way ironforge runs a host tool: bounded in time, in its own process group, dying
with its parent, optionally under rlimits.

A tool that hangs (a stalled mirror under mmdebstrap, a crafted image under qemu-img, gpgv on a
blocked keyring) must never hang a build or a scheduled rebuild forever, and a build killed with
SIGKILL must not leave its tools running. Every ``subprocess`` call of the product goes through
``run`` (or ``spawn`` for the few that stream output), so these rules are written once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from builder.errors import BuildError, ToolFailed, ToolTimeout

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Limits:
    """rlimits for untrusted work (a crafted image header must not eat the host)."""

    cpu_seconds: int | None = None
    address_space: int | None = None     # bytes
    file_size: int | None = None         # bytes a child may write to one file
    core_size: int | None = None         # 0: no core dump of a tool a crafted input crashed


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def child_setup(limits: Limits | None = None, parent_pid: int | None = None) -> Callable[[], None]:
    """What runs in the child between fork and exec.

    - its own session (so the whole tree can be signalled as one group, and the terminal's Ctrl-C
      reaches only us: we stop the child ourselves, in order);
    - PDEATHSIG=SIGKILL, so a SIGKILLed parent takes the tool with it. It fires when the *thread*
      that forked exits; every caller waits for its child in the thread that started it;
    - a parent that died before prctl took effect: exit at once instead of running orphaned;
    - the default SIGINT/SIGPIPE handlers (a backgrounded shell passes SIGINT on as ignored).
    """
    parent = parent_pid if parent_pid is not None else os.getpid()

    def setup() -> None:
        os.setsid()
        libc = _libc()
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        if limits is not None:
            if limits.cpu_seconds is not None:
                resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
            if limits.address_space is not None:
                resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
            if limits.file_size is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
            if limits.core_size is not None:
                resource.setrlimit(resource.RLIMIT_CORE, (limits.core_size, limits.core_size))
    return setup


# PDEATHSIG takes only the direct child with us; a tool's own children (apt-get under
# mmdebstrap, a shell's sleep) would live on. So one small guard process per ironforge process
# holds the read end of a pipe and the list of our tools' process groups: when we die, however,
# the kernel closes the write end, the guard reads EOF and SIGKILLs every group still listed.
_GUARD_CODE = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
groups = set()
for line in sys.stdin.buffer:
    try:
        pgid = int(line[1:])
    except ValueError:
        continue
    (groups.add if line[:1] == b"+" else groups.discard)(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class _Guard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = 0

    def _ensure(self) -> None:
        if self._proc is None or self._owner != os.getpid() or self._proc.poll() is not None:
            # -I -S: no site, no user paths: starts in ~20 ms and imports nothing of ours
            self._proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _GUARD_CODE],
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
            self._owner = os.getpid()

    def start(self) -> None:
        """Have a guard running before a tool starts, so none is ever unguarded for long."""
        with self._lock:
            self._ensure()

    def _send(self, line: bytes) -> None:
        with self._lock:
            self._ensure()
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except OSError:        # the guard is gone; the next call starts another
                self._proc = None

    def watch(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)


_guard = _Guard()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (work dirs, publish debris and leases
    carry their owner's pid so leftovers of dead runs can be told apart from live work)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # alive, owned by someone else
        return True
    return True


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - a child in D state
        pass
    _guard.forget(proc.pid)


def _tail(text: str | bytes | None, lines: int = 15) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:])


def spawn(cmd: Sequence[str], *, limits: Limits | None = None, **popen: object) -> subprocess.Popen:
    """Start a bounded child for callers that stream its output; they must ``kill_group`` it on
    every way out (``with bounded(proc, timeout)`` does that)."""
    _guard.start()
    proc = subprocess.Popen([str(c) for c in cmd], preexec_fn=child_setup(limits), **popen)  # type: ignore[arg-type]
    _guard.watch(proc.pid)
    return proc


class Deadline:
    """What ``bounded`` yields: whether the watchdog had to stop the child."""

    def __init__(self, timeout: float | None):
        self.timeout = timeout
        self.expired = False


@contextlib.contextmanager
def bounded(proc: subprocess.Popen, timeout: float | None) -> Iterator[Deadline]:
    """Own a streaming child: a watchdog SIGKILLs its group after ``timeout`` seconds (the reader
    then sees EOF and checks ``expired``), and leaving the block any way at all kills whatever is
    left of the group (grandchildren included) and reaps the child."""
    state = Deadline(timeout)

    def expire() -> None:
        state.expired = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
    try:
        yield state
    finally:
        if timer is not None:
            timer.cancel()
        kill_group(proc)


def run(cmd: Sequence[str], *, what: str, timeout: float, input: str | bytes | None = None,
        text: bool = True, env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
        limits: Limits | None = None, check: bool = True, hint: str | None = None,
        timeout_error: type[BuildError] = ToolTimeout,
        stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.PIPE,
        ) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion within ``timeout`` seconds.

    On timeout the whole process group is killed and ``timeout_error`` raised (callers pass their
    own kind, e.g. a signature error for gpgv). With ``check`` a non-zero exit raises
    ``ToolFailed`` quoting the tail of the tool's stderr (or stdout). On any other way out
    (KeyboardInterrupt, an exception in this thread) the child is killed too.
    """
    proc = spawn(cmd, limits=limits, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                 stdout=stdout, stderr=stderr, text=text, env=None if env is None else dict(env),
                 cwd=cwd, **({"errors": "replace"} if text else {}))
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise timeout_error(f"{what}: still running after {timeout:.0f} s; stopped it",
                            hint=hint or "the tool hung; run again with -v to see its command") from None
    except BaseException:
        kill_group(proc)
        raise
    # the tool is done; anything it left running in its group goes with it
    kill_group(proc)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        why = _tail(err) or _tail(out) or "no output"
        if proc.returncode < 0:
            why = f"killed by signal {-proc.returncode}" + (f": {why}" if why != "no output" else "")
        raise ToolFailed(f"{what} failed (exit code {proc.returncode}): {why}",
                         returncode=proc.returncode, output=why, hint=hint)
    return res
