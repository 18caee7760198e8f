"""The CLI as a person runs it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ironforge(*args, env=None, cwd=ROOT):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "builder.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=e, timeout=300)


def test_validate_all_shipped():
    r = ironforge("recipes", "validate")
    assert r.returncode == 0, r.stderr
    assert "ok  debian-12-amd64" in r.stdout


def test_bad_recipe_exit_2_every_mistake(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('extends = "debian-12-amd64"\n[disk]\nsize = "four"\n[build]\nmethod = "magik"\n'
                 '[customize]\nhostnme = "x"\n')
    r = ironforge("--recipes-dir", str(ROOT / "recipes"), "recipes", "validate", str(f))
    assert r.returncode == 2
    assert f"{f}: disk.size: expected a size" in r.stderr
    assert f"{f}: build.method: expected one of 'bootstrap', 'installer', 'convert', got \"magik\"" in r.stderr
    assert "customize.hostnme" in r.stderr and "did you mean 'customize.hostname'" in r.stderr
    assert "Traceback" not in r.stderr


def test_build_bad_recipe_exit_2_no_traceback(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('arch = "sparc64"\n')
    r = ironforge("build", str(f))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "arch: expected an architecture" in r.stderr
    assert "os.family" in r.stderr  # missing required keys too, all at once


def test_unknown_recipe_name_suggests(tmp_path):
    r = ironforge("plan", "debian-12-amd46")
    assert r.returncode == 2
    assert "did you mean 'debian-12-amd64'" in r.stderr


def test_usage_error_exit_2():
    r = ironforge("build", "--jobs", "zero", "debian-12-amd64")
    assert r.returncode == 2
    r = ironforge("fetch", "--url", "http://127.0.0.1:9/x")
    assert r.returncode == 2 and "--sha256" in r.stderr


def test_doctor_reports_accelerator_and_why():
    r = ironforge("doctor", "--json")
    assert r.returncode in (0, 3), r.stderr
    rep = json.loads(r.stdout)
    assert rep["accel"]["mode"] in ("kvm", "tcg") and rep["accel"]["reason"]
    if Path("/sys/module/kvm_pvm").exists():
        assert rep["accel"]["mode"] == "tcg" and "PVM" in rep["accel"]["reason"]
    txt = ironforge("doctor")
    assert txt.stdout.startswith("accelerator: ")


def test_doctor_missing_tool_exit_3(tmp_path):
    # a PATH without the tools: doctor names what to install and exits 3
    r = ironforge("doctor", env={"PATH": str(tmp_path)})
    assert r.returncode == 3
    assert "apt-get install qemu-utils" in r.stdout + r.stderr


def test_schema_generated():
    r = ironforge("recipes", "schema")
    assert r.returncode == 0 and "`customize.hostname`" in r.stdout


def test_plan_lists_every_stage_of_every_recipe(tmp_path):
    # an empty cache: offline, no InRelease was ever downloaded, so no bootstrap key is knowable
    r = ironforge("--cache-dir", str(tmp_path), "plan", "--all", "--offline", "--json")
    assert r.returncode == 0, r.stderr
    first = {p["recipe"]: p["stages"] for p in json.loads(r.stdout)}["debian-12-amd64"]
    assert first[0]["key"] is None and "unknown offline" in first[0]["reason"]
    assert "InRelease" in first[0]["reason"] and "without --offline" in first[0]["reason"]
    assert all(s["key"] is None and not s["hit"] for s in first)
    assert first[1]["reason"] == "input bootstrap unknown offline"
    plans = {p["recipe"]: [s["stage"] for s in p["stages"]] for p in json.loads(r.stdout)}
    assert plans["debian-12-amd64"] == ["bootstrap", "disk", "customize", "drivers", "export", "verify"]
    assert plans["debian-12-amd64-installer"] == ["fetch", "install", "customize", "drivers", "export", "verify"]
    assert set(plans) >= {"debian-12-i386", "debian-13-amd64", "debian-12-i386-installer"}


def test_accel_notice_once(tmp_path):
    r = ironforge("--accel", "tcg", "plan", "--offline", "debian-12-amd64", env={"IRONFORGE_CACHE": str(tmp_path)})
    assert r.stderr.count("accelerator: TCG (forced by --accel)") <= 1
