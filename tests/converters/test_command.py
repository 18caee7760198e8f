"""`ironforge convert` through the real CLI: dry run writes nothing, import-only, a disk with
no operating system stops at inspect (exit 1, the reason), refusals exit 1 with the reason and no
traceback; and the recipe method build.method = "convert". (A real guest's conversion:
tests/converters/stages/test_convert.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import converters_support as S

REPO = Path(__file__).resolve().parents[2]


def cli(*args, cache: Path):
    env = {**os.environ, "IRONFORGE_CACHE": str(cache), "IRONFORGE_ACCEL": "tcg"}
    return subprocess.run([sys.executable, "-m", "builder.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_dry_run_checks_inspects_read_only_and_writes_nothing(good, tmp_path):
    cache = tmp_path / "cache"
    r = cli("convert", "--dry-run", "--json", good[("vhdx", None)], good[("vdi", None)], cache=cache)
    # the disks hold data, no operating system: the read-only inspection says so, nothing written
    assert r.returncode == 1, r.stderr
    assert "no operating system found on the disks" in r.stderr and "Traceback" not in r.stderr
    assert not cache.exists()


def test_import_only_then_inspect_refuses_a_disk_without_an_os(good, tmp_path):
    cache = tmp_path / "cache"
    r = cli("convert", "--import-only", "--json", "--name", "guest1", good[("vpc", "fixed")], cache=cache)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["name"] == "guest1" and res["vm"]["name"] == "guest1" and not res["cached"]
    img = Path(res["import"]["dir"]) / res["import"]["files"]["image"]
    assert S.same_contents(good[("vpc", "fixed")], "vpc", img)
    r2 = cli("convert", "--no-verify", "--name", "guest1", good[("vpc", "fixed")], cache=cache)
    assert r2.returncode == 1
    assert "import: cached" in r2.stderr
    assert "no operating system found on the disks" in r2.stderr


def test_hostile_input_exits_1_with_the_reason(tmp_path):
    sent, marker = S.sentinel(tmp_path)
    h = tmp_path / "h.qcow2"
    S.qimg("create", "-q", "-f", "qcow2", "-u", "-b", sent, "-F", "raw", h, "16M")
    cache = tmp_path / "cache"
    r = cli("convert", "--import-only", h, cache=cache)
    assert r.returncode == 1
    assert "refused: qcow2 names a backing file" in r.stderr and "Traceback" not in r.stderr
    if cache.exists():
        S.assert_no_sentinel(cache, marker)


def test_convert_recipe_method(good, tmp_path):
    recipe = tmp_path / "conv.toml"
    recipe.write_text('arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n[build]\nmethod = "convert"\n'
                      f'[source.image]\npath = "{good[("qcow2", None)]}"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n[build]\nmethod = "convert"\n'
                   '[source.image]\nurl = "https://example.com/x.ova"\n')
    cache = tmp_path / "cache"
    assert cli("recipes", "validate", recipe, cache=cache).returncode == 0
    r = cli("recipes", "validate", bad, cache=cache)
    assert r.returncode == 2 and "source.image.sha256: expected a sha256 for a url source" in r.stderr
    r = cli("plan", "--json", recipe, cache=cache)
    assert r.returncode == 0, r.stderr
    stages = json.loads(r.stdout)[0]["stages"]
    assert [s["stage"] for s in stages][:2] == ["import", "inspect"]
    assert all(not s["hit"] for s in stages)


def test_dry_run_of_a_container_checks_every_member(tmp_path):
    import tarfile
    ok = S.tar_with(tmp_path / "ct.tar.xz", [(S.member("./etc", tarfile.DIRTYPE), None),
                                             (S.member("./etc/hostname"), b"ct\n"),
                                             (S.member("./dev/null", tarfile.CHRTYPE), None)], "w:xz")
    r = cli("convert", "--dry-run", ok, cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    assert "rootfs" in r.stdout and "skip dev/null: character device" in r.stdout
    bad = S.tar_with(tmp_path / "bad.tar", [(S.member("./etc", tarfile.DIRTYPE), None),
                                            (S.member("./etc/x", tarfile.LNKTYPE, "/etc/shadow"), None)])
    r = cli("convert", "--dry-run", bad, cache=tmp_path / "cache")
    assert r.returncode == 1 and "absolute name" in r.stderr
    assert not (tmp_path / "cache").exists()


def test_a_container_without_dpkg_is_imported_and_inspected_then_refused(tmp_path):
    import tarfile
    ct = S.tar_with(tmp_path / "ct.tar", [(S.member("./etc", tarfile.DIRTYPE), None),
                                          (S.member("./etc/hostname"), b"ct\n")])
    r = cli("convert", "--no-verify", ct, cache=tmp_path / "cache")
    # no launch for a container: inspect reads the tar on the host; convert refuses with exit 2
    # (a kernel is installed only into Debian containers: tests/converters/stages/test_convert_container.py)
    assert r.returncode == 2, r.stderr
    assert "inspect: running" in r.stderr
    assert "ironforge installs a kernel only into Debian containers" in r.stderr
    assert "Traceback" not in r.stderr
