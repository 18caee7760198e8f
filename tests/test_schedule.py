"""ironforge schedule systemd: units that systemd-analyze verify (the real tool) accepts, whose
ExecStart really starts this ironforge, and a calendar spec systemd understands."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ironforge(*args, env=None):
    return subprocess.run([sys.executable, "-m", "builder.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, **(env or {})), timeout=120)


def _verify(files, user: bool, runtime: Path):
    cmd = ["systemd-analyze", *(["--user"] if user else []), "verify", *map(str, files)]
    # the user manager needs a runtime directory even to verify
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime)))


def _exec_start(service: Path) -> list[str]:
    line = next(ln for ln in service.read_text().splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):])


@pytest.mark.parametrize("user", [False, True])
def test_units_pass_systemd_analyze_verify_and_run_this_ironforge(tmp_path, user):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    units = tmp_path / "units"
    r = ironforge("--output-dir", str(tmp_path / "out"), "schedule", "systemd", *(["--user"] if user else []),
                  "--on-calendar", "Mon *-*-* 03:00", "--unit-dir", str(units), "--keep", "3", "debian-12-amd64")
    assert r.returncode == 0, r.stderr
    service, timer = units / "ironforge-rebuild.service", units / "ironforge-rebuild.timer"
    v = _verify([service, timer], user, runtime)
    assert v.returncode == 0 and v.stdout.strip() == "" and v.stderr.strip() == "", v.stdout + v.stderr
    assert "OnCalendar=Mon *-*-* 03:00:00" in timer.read_text()      # systemd's normalized form
    assert ("After=network-online.target" in service.read_text()) is (not user)
    argv = _exec_start(service)
    i = argv.index("rebuild")
    assert argv[i:] == ["rebuild", "debian-12-amd64", "--keep", "3"]
    assert argv[argv.index("--output-dir") + 1] == str((tmp_path / "out").resolve())
    # the command line the unit runs starts this ironforge (from the unit's working directory)
    wd = next(ln for ln in service.read_text().splitlines() if ln.startswith("WorkingDirectory="))
    run = subprocess.run(argv[:i] + ["rebuild", "--help"], capture_output=True, text=True,
                         cwd=wd.split("=", 1)[1], timeout=120)
    assert run.returncode == 0 and "--keep" in run.stdout, run.stderr
    # the linter is not a rubber stamp: the same service pointing at a missing program fails
    bad = tmp_path / "bad" / "ironforge-rebuild.service"
    bad.parent.mkdir()
    bad.write_text(service.read_text().replace(f"ExecStart={argv[0]}", "ExecStart=/nonexistent/ironforge"))
    assert _verify([bad], user, runtime).returncode != 0


def test_a_bad_calendar_spec_is_exit_2_and_writes_nothing(tmp_path):
    r = ironforge("schedule", "systemd", "--on-calendar", "every tuesday-ish", "--unit-dir", str(tmp_path / "u"))
    assert r.returncode == 2
    assert "--on-calendar 'every tuesday-ish'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "u").exists()
