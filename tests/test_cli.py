"""The CLI as a person runs it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    # its customizations only edit files: the disk stage applies them to the tree, no customize stage
    assert plans["debian-12-amd64"] == ["bootstrap", "disk", "drivers", "export", "verify"]
    assert plans["debian-12-amd64-installer"] == ["fetch", "install", "customize", "drivers", "export", "verify"]
    assert set(plans) >= {"debian-12-i386", "debian-13-amd64", "debian-12-i386-installer"}


def test_accel_notice_once(tmp_path):
    """Planning every recipe makes one engine per recipe; the accelerator is announced exactly once."""
    r = ironforge("--accel", "tcg", "plan", "--offline", "--all", env={"IRONFORGE_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("accelerator: ") == 1
    assert r.stderr.count("accelerator: TCG (forced by --accel)") == 1


def test_run_no_snapshot_refuses_shared_images_and_copy_makes_a_private_one(tmp_path):
    """``run --no-snapshot`` would write into the image: refused (exit 2, no boot) for a cache
    entry, a published output, a read-only file or one with several hard links."""
    from builder.private_image import shared_reason
    cache, out = tmp_path / "cache", tmp_path / "output"
    (cache / "stages" / "k").mkdir(parents=True)
    (out / "x").mkdir(parents=True)
    cases = {
        cache / "stages" / "k" / "image.qcow2": "inside the cache",
        out / "x" / "x.qcow2": "a published output",
        tmp_path / "ro.qcow2": "read-only",
        tmp_path / "linked.qcow2": "2 hard links",
    }
    for p in cases:
        p.write_bytes(b"\0" * 512)
    (tmp_path / "ro.qcow2").chmod(0o444)
    os.link(tmp_path / "linked.qcow2", tmp_path / "second-name.qcow2")
    base = ("--cache-dir", str(cache), "--output-dir", str(out), "--accel", "tcg", "run", "--arch", "x86_64")
    for p, words in cases.items():
        r = ironforge(*base, "--no-snapshot", str(p))
        assert r.returncode == 2, (p, r.stderr)
        assert words in r.stderr and "--copy" in r.stderr and "Traceback" not in r.stderr
    # a --copy destination inside the output folder, or one that exists, is refused too
    r = ironforge(*base, "--copy", str(out / "x" / "mine.qcow2"), str(out / "x" / "x.qcow2"))
    assert r.returncode == 2 and "published output" in r.stderr
    assert not (out / "x" / "mine.qcow2").exists()
    r = ironforge(*base, "--copy", str(tmp_path / "ro.qcow2"), str(out / "x" / "x.qcow2"))
    assert r.returncode == 2 and "already exists" in r.stderr
    # what --copy makes passes the same check (booting it is the interactive test's job)
    from builder.clone import clone_file
    clone_file(out / "x" / "x.qcow2", tmp_path / "private.qcow2")
    assert shared_reason(tmp_path / "private.qcow2", cache, out) is None
    assert shared_reason(tmp_path / "linked.qcow2", cache, out) is not None


# -- hostile recipe files, host paths, credentials (through the real CLI) -------------------------

def test_deeply_nested_and_huge_recipes_exit_2_naming_the_file(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"# padding line\n" * 80_000)          # > 1 MiB
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)) * 64)
    for f in (deep, huge, binary):
        r = ironforge("recipes", "validate", str(f))
        assert r.returncode == 2, r.stderr
        assert str(f) in r.stderr
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr
        r = ironforge("plan", "--offline", str(f))            # the same through another command
        assert r.returncode == 2 and str(f) in r.stderr and "Traceback" not in r.stderr


def _host_recipe(tmp_path):
    rdir, outside = tmp_path / "recipes", tmp_path / "host"
    rdir.mkdir()
    outside.mkdir()
    (outside / "motd").write_text("from the host\n")
    f = rdir / "r.toml"
    f.write_text(f'extends = "{ROOT / "recipes" / "debian-12-amd64.toml"}"\n'
                 f'[[customize.files]]\npath = "/etc/motd"\nsource = "{outside / "motd"}"\n')
    return f, outside


def test_host_paths_outside_the_recipe_folder_need_the_flag(tmp_path):
    f, outside = _host_recipe(tmp_path)
    r = ironforge("recipes", "validate", str(f))
    assert r.returncode == 2
    assert str(outside / "motd") in r.stderr and str(f) in r.stderr and "--allow-host-path" in r.stderr
    assert ironforge("--allow-host-path", str(outside), "recipes", "validate", str(f)).returncode == 0
    # or the user's own setting, several directories separated by os.pathsep
    env = {"IRONFORGE_ALLOW_HOST_PATH": os.pathsep.join([str(tmp_path / "other"), str(outside)])}
    assert ironforge("recipes", "validate", str(f), env=env).returncode == 0
    # an allowed directory does not allow its parent
    assert ironforge("--allow-host-path", str(outside / "sub"), "recipes", "validate",
                     str(f)).returncode == 2


def test_credentials_in_a_mirror_are_refused_and_nothing_is_written(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(f'extends = "{ROOT / "recipes" / "debian-12-amd64.toml"}"\n'
                 '[build]\nmirror = "http://builder:Pa55-in-url-42@mirror.example/debian"\n')
    cache, out = tmp_path / "cache", tmp_path / "output"
    for cmd in (("plan", "--json", "--offline"), ("build", "--offline", "--no-verify"), ("fetch",)):
        r = ironforge("--cache-dir", str(cache), "--output-dir", str(out), *cmd, str(f))
        assert r.returncode == 2, (cmd, r.stderr)
        assert "build.mirror" in r.stderr and "credentials" in r.stderr
        assert "Pa55-in-url-42" not in r.stdout + r.stderr
        assert not cache.exists() and not out.exists()


@pytest.mark.network
def test_plan_json_holds_no_secret_or_file_digest(tmp_path):
    """Online, so that the bootstrap pin (the archive's InRelease) is known and the key of the
    stage that applies the customizations (here the disk stage: they only edit files), which
    covers the secret and the file, is really computed."""
    import hashlib
    rdir = tmp_path / "recipes"
    rdir.mkdir()
    (rdir / "root.pw").write_text("Root-Pw-from-file-5150\n")
    (rdir / "motd").write_text("private motd 8d2e\n")
    f = rdir / "r.toml"
    f.write_text(f'extends = "{ROOT / "recipes" / "debian-12-amd64.toml"}"\n'
                 '[customize]\nroot_password = { file = "root.pw" }\n'
                 '[[customize.files]]\npath = "/etc/motd"\nsource = "motd"\n')
    r = ironforge("--cache-dir", str(tmp_path / "cache"), "-v", "plan", "--json", str(f))
    assert r.returncode == 0, r.stderr
    stages = json.loads(r.stdout)[0]["stages"]
    assert [s["stage"] for s in stages][:3] == ["bootstrap", "disk", "drivers"]
    assert stages[1]["key"] and stages[1]["reason"] == "never built"
    digest = hashlib.sha256(b"private motd 8d2e\n").hexdigest()
    for text in (r.stdout, r.stderr):
        assert "Root-Pw-from-file-5150" not in text and "private motd" not in text and digest not in text


def test_a_rebuild_version_carries_the_html_report_of_its_verification(tmp_path):
    """The rebuild's report hook writes report.html from the verify stage's data (the page itself
    is tested in tests/runner/test_html_report.py); a run without verification writes none."""
    from types import SimpleNamespace

    from builder.cli import _version_report
    from builder.runner.verify import VerifyResult
    v = VerifyResult(image="/o/web.qcow2", name="web", arch="x86_64", accel="tcg", firmware="bios",
                     status="passed", reason="", message="marker seen", hint="", boot_seconds=41.5,
                     serial_tail=["ironforge-boot-ok"], timeline={"firmware": 1.0, "kernel": 3.0,
                                                                  "userspace": 30.0, "marker": 41.5})
    art = SimpleNamespace(data=v.to_dict())
    result = SimpleNamespace(recipe=SimpleNamespace(name="web"), artifacts={"verify": art})
    _version_report(tmp_path, result, {"version": "20261129T080000Z-abcd1234"})
    page = (tmp_path / "report.html").read_text()
    assert "web" in page and "passed" in page and "20261129T080000Z-abcd1234" in page
    (tmp_path / "report.html").unlink()
    _version_report(tmp_path, SimpleNamespace(recipe=result.recipe, artifacts={}), {"version": "x"})
    assert not (tmp_path / "report.html").exists()
