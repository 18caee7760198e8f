"""`ironforge plan --json --matrix`, `ironforge ci github|gitlab` and the reports every `build`
writes, through the real CLI (no boots: plans are offline, the builds fail before any stage runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def ironforge(*args, tmp: Path, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, IRONFORGE_CACHE=str(tmp / "cache"))
    r = subprocess.run([sys.executable, "-m", "builder.cli", "--output-dir", str(tmp / "output"), *map(str, args)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    if check_rc is not None:
        assert r.returncode == check_rc, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def test_plan_matrix_lists_buildable_recipes_by_arch(tmp_path):
    r = ironforge("-q", "plan", "--all", "--json", "--matrix", "--offline", tmp=tmp_path)
    assert r.stdout.count("\n") == 1                         # one line: a GitHub job output
    include = json.loads(r.stdout)["include"]
    pairs = [(e["arch"], e["recipe"]) for e in include]
    assert pairs == sorted(pairs)                             # grouped by arch
    assert ("x86_64", "debian-12-amd64") in pairs and ("i686", "debian-12-i386") in pairs
    # Windows recipes name no media: a job for them could only fail
    assert not [p for p in pairs if p[1].startswith("windows-")]
    one = ironforge("-q", "plan", "debian-12-i386", "--json", "--matrix", "--offline", tmp=tmp_path)
    assert json.loads(one.stdout) == {"include": [{"recipe": "debian-12-i386", "arch": "i686"}]}


def test_plan_matrix_needs_json(tmp_path):
    r = ironforge("plan", "--all", "--matrix", tmp=tmp_path, check_rc=2)
    assert "--matrix" in r.stderr and "Traceback" not in r.stderr


def test_ci_files_written_whole(tmp_path):
    wf = tmp_path / "repo" / ".github" / "workflows" / "ironforge.yml"
    r = ironforge("ci", "github", "--cron", "0 2 * * 6", "--output", wf, tmp=tmp_path)
    assert r.stdout.strip() == str(wf)
    assert yaml.safe_load(wf.read_text())[True]["schedule"] == [{"cron": "0 2 * * 6"}]
    printed = ironforge("ci", "gitlab", tmp=tmp_path).stdout
    assert yaml.safe_load(printed)["stages"] == ["plan", "build"]
    assert [p.name for p in wf.parent.iterdir()] == ["ironforge.yml"]       # no temporary left


def test_gitlab_child_pipeline_from_the_plan(tmp_path):
    """What the GitLab plan job does: the plan's matrix in, the child pipeline out."""
    matrix = tmp_path / "matrix.json"
    matrix.write_text(ironforge("-q", "plan", "--all", "--json", "--matrix", "--offline", tmp=tmp_path).stdout)
    child = tmp_path / "child-pipeline.yml"
    ironforge("ci", "gitlab", "--from-matrix", matrix, "--output", child, tmp=tmp_path)
    jobs = yaml.safe_load(child.read_text())["build"]["parallel"]["matrix"]
    assert [j["RECIPE"] for j in jobs] == [e["recipe"] for e in json.loads(matrix.read_text())["include"]]


def test_ci_usage_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for args, words in ((("ci", "gitlab", "--from-matrix", bad), "not JSON"),
                        (("ci", "gitlab", "--from-matrix", tmp_path / "none.json"), "cannot read"),
                        (("ci", "gitlab", "--cron", "0 2 * * *"), "Pipeline schedules"),
                        (("ci", "github", "--cron", "daily"), "five cron fields"),
                        (("ci", "jenkins"), "jenkins")):
        r = ironforge(*args, tmp=tmp_path, check_rc=2)
        assert words in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_build_writes_html_and_junit_even_when_nothing_builds(tmp_path):
    """A recipe without its media and an offline build with nothing cached: both fail before any
    stage runs; the run's report and JUnit still say so, one row per recipe."""
    junit, page = tmp_path / "j.xml", tmp_path / "out" / "page.html"
    r = ironforge("build", "windows-10-amd64", "debian-12-amd64", "--offline", "--junit", junit, "--html", page,
                  tmp=tmp_path, check_rc=2)
    assert "windows.media" in r.stderr
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("errors")) == ("2", "2")
    errors = {tc.get("name"): tc.find("error").get("message") for tc in suite.iter("testcase")}
    assert "windows.media" in errors["windows-10-amd64"] and "--offline" in errors["debian-12-amd64"]
    text = page.read_text()
    assert text.count('data-verdict="error"') == 2 and "windows.media" in text
    # without --html the report goes to <output-dir>/report.html
    ironforge("build", "windows-10-amd64", tmp=tmp_path, check_rc=2)
    assert 'data-image="windows-10-amd64"' in (tmp_path / "output" / "report.html").read_text()
