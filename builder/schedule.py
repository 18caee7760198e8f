"""``ironforge schedule systemd``: a oneshot service that runs ``ironforge rebuild`` and a timer
that starts it. Paths are made absolute, so the units do not depend on the directory they were
written from; the calendar spec is checked by ``systemd-analyze calendar`` before anything is
written.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from builder.errors import MissingEnvironment, UsageError
from builder.host import proc, tools

UNIT = "ironforge-rebuild"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    user: bool
    on_calendar: str
    command: list[str]          # ExecStart, argv
    workdir: Path
    environment: dict[str, str]
    randomized_delay: str = "15min"


def unit_dir(user: bool) -> Path:
    if user:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return Path(base) / "systemd" / "user"
    return Path("/etc/systemd/system")


def ironforge_argv() -> list[str]:
    """How to start this ironforge again: its console script when that is what runs, else this
    Python with ``-m builder.cli`` (from the project root, the unit's working directory)."""
    exe = Path(sys.argv[0])
    if exe.name == "ironforge" and exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe.resolve())]
    return [sys.executable, "-m", "builder.cli"]


def _quote(arg: str) -> str:
    # systemd's ExecStart splitting honours double quotes and backslashes; "%" starts a specifier
    # and "$" a variable
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and all(c.isalnum() or c in "/._-=+:,@" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_calendar(spec: str) -> str:
    """The normalized form of an OnCalendar spec, or UsageError (exit 2) with systemd's words."""
    if not spec.strip() or "\n" in spec:
        raise UsageError(f"--on-calendar {spec!r}: not a calendar spec", hint="e.g. daily, 'Mon *-*-* 03:00'")
    exe = tools.which("systemd-analyze")
    if exe is None:
        raise MissingEnvironment("systemd-analyze is not installed", hint="apt-get install systemd")
    r = proc.run([exe, "calendar", spec], what="systemd-analyze calendar", timeout=30, check=False)
    if r.returncode != 0:
        said = ((r.stderr or r.stdout).strip().splitlines() or ["refused"])[-1]
        raise UsageError(f"--on-calendar {spec!r}: {said}",
                         hint="see `man systemd.time` (e.g. daily, weekly, '*-*-* 04:30')")
    for line in r.stdout.splitlines():
        k, _, v = line.strip().partition(":")
        if k.strip() == "Normalized form":
            return v.strip()
    return spec


def service_text(p: Plan) -> str:
    lines = ["[Unit]", "Description=ironforge: rebuild images whose inputs changed upstream",
             f"Documentation=file://{PROJECT_ROOT / 'README.md'}"]
    if not p.user:   # the user manager has no network-online.target of its own
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += ["", "[Service]", "Type=oneshot", f"WorkingDirectory={p.workdir}"]
    lines += [f"Environment={_quote(f'{k}={v}')}" for k, v in sorted(p.environment.items())]
    lines += ["ExecStart=" + " ".join(_quote(a) for a in p.command),
              # a rebuild is background work; ironforge bounds its own tools (mmdebstrap 1 h, …)
              "Nice=10", "IOSchedulingClass=idle", "TimeoutStartSec=12h"]
    return "\n".join(lines) + "\n"


def timer_text(p: Plan) -> str:
    return "\n".join([
        "[Unit]", "Description=ironforge: scheduled rebuild", "",
        "[Timer]", f"OnCalendar={p.on_calendar}", f"RandomizedDelaySec={p.randomized_delay}",
        "Persistent=true", f"Unit={UNIT}.service", "",
        "[Install]", "WantedBy=timers.target", ""])


def write(p: Plan, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix, text in (("service", service_text(p)), ("timer", timer_text(p))):
        f = directory / f"{UNIT}.{suffix}"
        tmp = f.with_name(f".{f.name}.tmp-{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, f)
        out.append(f)
    return out


def enable_hint(p: Plan) -> str:
    u = " --user" if p.user else ""
    return f"systemctl{u} daemon-reload && systemctl{u} enable --now {UNIT}.timer"


def rebuild_args(recipes: list[str], keep: int, no_verify: bool) -> list[str]:
    args = ["rebuild", *(recipes or ["--all"]), "--keep", str(keep)]
    return args + (["--no-verify"] if no_verify else [])


def describe(p: Plan) -> str:
    return shlex.join(p.command)
