"""The one way ironforge runs a host tool: bounded in time, in its own process group, dying
with its parent, optionally under rlimits.

A tool that hangs (a stalled mirror under mmdebstrap, a crafted image under qemu-img, gpgv on a
blocked keyring) must never hang a build or a scheduled rebuild forever, and a build killed with
SIGKILL must not leave its tools running. Every ``subprocess`` call of the product goes through
``run`` (or ``spawn`` for the few that stream output), so these rules are written once.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from builder.errors import BuildError, ToolFailed, ToolTimeout

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Limits:
    """rlimits for untrusted work (a crafted image header must not eat the host)."""

    cpu_seconds: int | None = None
    address_space: int | None = None     # bytes
    file_size: int | None = None         # bytes a child may write to one file
    core_size: int | None = None         # 0: a tool crashed by a crafted input leaves no core file


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


def _tail(text: str | bytes | None, lines: int = 15) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:])


def spawn(cmd: Sequence[str], *, limits: Limits | None = None, **popen: object) -> subprocess.Popen:
    """Start a bounded child for callers that stream its output; they must ``kill_group`` it on
    every way out (``with bounded(proc)`` does that)."""
    return subprocess.Popen([str(c) for c in cmd], preexec_fn=child_setup(limits), **popen)  # type: ignore[arg-type]


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
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        why = _tail(err) or _tail(out) or "no output"
        if proc.returncode < 0:
            why = f"killed by signal {-proc.returncode}" + (f": {why}" if why != "no output" else "")
        raise ToolFailed(f"{what} failed (exit code {proc.returncode}): {why}",
                         returncode=proc.returncode, output=why, hint=hint)
    return res
