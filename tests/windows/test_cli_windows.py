"""`ironforge plan/build` for Windows recipes: what is missing is named, editions are shown,
secrets stay out; on STAND-IN media (no Microsoft media exist here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder import pipeline
from builder import recipe as recipes
from builder.errors import NotImplementedYet

REPO = Path(__file__).resolve().parents[2]
SECRET = "cli-Stand-in-pw"


def ironforge(*args, env=None, cache=None):
    e = dict(os.environ)
    e.pop("IRONFORGE_WINDOWS_ADMIN_PASSWORD", None)
    e.update(env or {})
    if cache:
        e["IRONFORGE_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "builder.cli", "--accel", "tcg", *args], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("cmd", ["plan", "build"])
def test_without_media_names_what_is_missing(cmd, tmp_path):
    r = ironforge(cmd, "windows-10-x86", cache=tmp_path)
    assert r.returncode == 2, r.stderr
    err = r.stderr
    assert "windows.media: expected the path (or url + sha256) of your Windows installer ISO" in err
    assert "windows.virtio_win: expected the path (or url + sha256) of the virtio-win ISO" in err
    assert 'path = "/srv/iso/Windows_10_English_x32.iso"' in err
    assert 'extends = "windows-10-x86"' in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("stages/*"))          # nothing ran, nothing was written


@pytest.fixture(scope="module")
def user_recipe(tmp_path_factory, standin_vw):
    from windows import standin_media as sm
    tmp = tmp_path_factory.mktemp("cli-win")
    iso = sm.make_media(tmp / "w10x86.iso", sm.WIN10_X86 + [("Windows 10 Home", "Core", "x86", 19045, "Client")], tmp)
    p = tmp / "my-w10.toml"
    p.write_text(f'extends = "windows-10-x86"\n[windows.media]\npath = "{iso.name}"\n'
                 f'[windows.virtio_win]\npath = "{standin_vw[0]}"\n')
    return p


def test_plan_shows_the_editions_on_the_media(user_recipe, tmp_path):
    r = ironforge("--recipes-dir", str(REPO / "recipes"), "plan", str(user_recipe), cache=tmp_path,
                  env={"IRONFORGE_WINDOWS_ADMIN_PASSWORD": SECRET})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "editions: 1: 'Windows 10 Pro' (Professional, x86, build 19045)" in out
    assert "editions: 2: 'Windows 10 Home' (Core, x86, build 19045)" in out
    assert "selected: 1: 'Windows 10 Pro'" in out and "read by pycdlib" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  ") and ":" not in line.split()[0]] \
        == ["fetch", "bootmedia", "answer", "install", "drivers", "export", "verify"]
    j = ironforge("--recipes-dir", str(REPO / "recipes"), "plan", "--json", str(user_recipe), cache=tmp_path,
                  env={"IRONFORGE_WINDOWS_ADMIN_PASSWORD": SECRET})
    assert j.returncode == 0
    facts = json.loads(j.stdout)[0]["facts"]
    assert facts["selected"].startswith("1: 'Windows 10 Pro'") and len(facts["editions"]) == 2
    assert SECRET not in r.stdout + r.stderr + j.stdout + j.stderr


def test_plan_refuses_an_edition_the_media_lack_and_lists_theirs(user_recipe, tmp_path):
    p = user_recipe.parent / "my-w10-edu.toml"
    p.write_text(f'extends = "{user_recipe.stem}"\n[windows]\nedition = "Windows 10 Education"\n')
    r = ironforge("--recipes-dir", str(REPO / "recipes"), "plan", str(p), cache=tmp_path)
    assert r.returncode == 2
    assert "windows.edition 'Windows 10 Education' is not on the media" in r.stderr
    assert "1: 'Windows 10 Pro' (Professional, x86, build 19045); 2: 'Windows 10 Home'" in r.stderr
    assert "Traceback" not in r.stderr


def test_windows_stages_come_from_the_windows_package():
    r = recipes.load("windows-10-amd64", REPO / "recipes")
    assert pipeline.stage_names(r) == ["fetch", "bootmedia", "answer", "install", "drivers", "export", "verify"]
    assert pipeline.load_stage("fetch", r).run.__module__ == "builder.windows.stages.fetch"
    assert pipeline.load_stage("answer", r).run.__module__ == "builder.windows.stages.answer"
    assert pipeline.load_stage("export", r).run.__module__ == "builder.stages.export"
    with pytest.raises(NotImplementedYet, match="builder/windows/stages/nosuch.py is missing"):
        pipeline.load_stage("nosuch", r)
