"""builder.linux.tree_edit: the libguestfs-shaped edits over a root tree on the host, and
``customize.apply`` through it on a real Debian 12 root (the route bootstrap builds take when
their customizations only edit files). Read back from the host, independently of the code."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import textwrap

import pytest

import customize_support
from customize_support import ALICE_KEYS, ALICE_PW, ROOT_PW

from builder import recipe as recipemod
from builder import secrets
from builder.linux import customize as cz
from builder.linux.tree_edit import TreeEdit


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc").mkdir()
    os.symlink("usr/lib", root / "lib")                  # a usr-merged tree
    return root


def test_write_creates_0644_and_keeps_an_existing_files_inode_mode_and_owner(tree):
    t = TreeEdit(tree)
    t.write("/etc/new", "hello\n")
    assert (tree / "etc/new").read_text() == "hello\n"
    assert (tree / "etc/new").stat().st_mode & 0o7777 == 0o644
    shadow = tree / "etc/shadow"
    shadow.write_text("old\n")
    os.chmod(shadow, 0o640)
    os.chown(shadow, 0, 42)
    ino = shadow.stat().st_ino
    t.write("/etc/shadow", b"new\n")
    st = shadow.stat()
    assert shadow.read_text() == "new\n" and (st.st_ino, st.st_mode & 0o7777, st.st_gid) == (ino, 0o640, 42)


def test_links_resolve_inside_the_tree_and_never_reach_the_host(tree, tmp_path):
    sentinel = tmp_path / "outside"
    sentinel.write_text("host file\n")
    os.chmod(sentinel, 0o644)
    # an absolute link, and one that climbs: both name the sentinel if followed on the host
    os.symlink(str(sentinel), tree / "etc/abs")
    os.symlink("../../../../../../" + str(sentinel).lstrip("/"), tree / "etc/climb")
    t = TreeEdit(tree)
    with pytest.raises(FileNotFoundError):           # the target's folder is not in the tree
        t.write("/etc/abs", "x")
    t.mkdir_p(str(sentinel.parent))                  # now it is: the target is made there
    t.write("/etc/abs", "inside\n")
    assert (tree / str(sentinel).lstrip("/")).read_text() == "inside\n"
    t.write("/etc/climb", "inside too\n")
    assert sentinel.read_text() == "host file\n"
    assert (tree / str(sentinel).lstrip("/")).read_text() == "inside too\n"
    t.chmod(0o600, "/etc/abs")
    t.chown(1234, 1234, "/etc/climb")
    inside = os.stat(tree / str(sentinel).lstrip("/"))
    assert (inside.st_mode & 0o777, inside.st_uid) == (0o600, 1234)
    assert (sentinel.stat().st_mode & 0o777, sentinel.stat().st_uid) == (0o644, 0)


def test_mkdir_p_follows_usr_merge_links_and_ln_sf_replaces(tree):
    t = TreeEdit(tree)
    t.mkdir_p("/lib/ironforge/x")
    assert (tree / "usr/lib/ironforge/x").is_dir() and (tree / "lib").is_symlink()
    (tree / "etc/localtime").write_text("a regular file first\n")
    t.ln_sf("/usr/share/zoneinfo/UTC", "/etc/localtime")
    assert os.readlink(tree / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    t.ln_sf("/etc/target", "/lib/ironforge")          # an existing directory: the link goes inside
    assert os.readlink(tree / "usr/lib/ironforge/target") == "/etc/target"
    t.rm_f("/etc/localtime")
    t.rm_f("/etc/not-there")
    assert not os.path.lexists(tree / "etc/localtime")
    with pytest.raises(IsADirectoryError):
        t.rm_f("/lib/ironforge")
    (tree / "etc/file").write_text("")
    with pytest.raises(FileExistsError):
        t.mkdir_p("/etc/file/sub")


FILE_ONLY = (customize_support.RECIPE_HEAD + customize_support.IDENTITY
             + 'firstboot = ["echo first boot > /var/tmp/firstboot-ran"]\n' + customize_support.ACCOUNTS_AND_FILES)


def test_every_file_only_customization_applied_to_a_real_debian_tree(tmp_path, caplog):
    recipe = recipemod.load(customize_support.recipe_dir(tmp_path, FILE_ONLY))
    assert cz.on_host(recipe)
    spec = cz.CustomizeSpec.from_recipe(recipe, {"IRONFORGE_TEST_ROOT_PW": ROOT_PW})
    root = customize_support.base_tree(tmp_path / "root")
    caplog.set_level(logging.DEBUG, logger="ironforge")

    summary = cz.apply(TreeEdit(root), spec)

    assert summary["hostname"] == "forged" and summary["users"] == ["alice", "dave"]
    assert ROOT_PW not in caplog.text + json.dumps(summary) and ALICE_PW not in caplog.text
    assert "customize: user alice (sudo)" in caplog.text          # the logs did get captured

    def text(p):
        return (root / p.lstrip("/")).read_text()

    def meta(p):
        st = os.lstat(root / p.lstrip("/"))
        return st.st_mode & 0o7777, st.st_uid, st.st_gid

    assert text("/etc/hostname") == "forged\n"
    assert "127.0.1.1\tforged" in text("/etc/hosts").splitlines()
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Paris"
    assert text("/etc/timezone") == "Europe/Paris\n"
    assert text("/etc/default/locale") == "LANG=en_US.UTF-8\n"
    assert "en_US.UTF-8 UTF-8" in text("/etc/locale.gen").splitlines()
    # locale-gen ran in the tree: the host's localedef reads the archive it wrote
    archive = subprocess.run(["localedef", "--list-archive", str(root / "usr/lib/locale/locale-archive")],
                             capture_output=True, text=True, check=True).stdout.split()
    assert "en_US.utf8" in archive

    shadow = {ln.split(":")[0]: ln.split(":") for ln in text("/etc/shadow").splitlines()}
    passwd = {ln.split(":")[0]: ln.split(":") for ln in text("/etc/passwd").splitlines()}
    group = {ln.split(":")[0]: ln.split(":") for ln in text("/etc/group").splitlines()}
    assert secrets.verify_password(ROOT_PW, shadow["root"][1])
    assert secrets.verify_password(ALICE_PW, shadow["alice"][1])
    assert shadow["dave"][1].startswith("!")
    _, _, uid, gid, _, home, shell = passwd["alice"]
    uid, gid = int(uid), int(gid)
    assert uid >= 1000 and home == "/home/alice" and shell == "/bin/bash"
    assert all("alice" in group[g][3].split(",") for g in ("adm", "users"))
    assert passwd["dave"][6] == "/bin/sh" and (root / "home/dave").is_dir()
    assert meta("/home/alice/.ssh") == (0o700, uid, gid)
    assert meta("/home/alice/.ssh/authorized_keys") == (0o600, uid, gid)
    assert text("/home/alice/.ssh/authorized_keys").splitlines() == ALICE_KEYS
    assert meta("/etc/sudoers.d/alice") == (0o440, 0, 0)
    assert meta("/etc/shadow")[0] == 0o640
    assert text("/etc/motd") == "Welcome to forged\n" and meta("/etc/motd") == (0o600, uid, gid)
    assert meta("/opt/app/config.ini") == (0o640, 0, int(group["adm"][2]))
    unit = "/etc/systemd/system/" + cz.FIRSTBOOT_UNIT
    assert text(unit) == cz.FIRSTBOOT_UNIT_TEXT
    assert os.readlink(root / ("etc/systemd/system/multi-user.target.wants/" + cz.FIRSTBOOT_UNIT)) == unit
    assert meta(cz.FIRSTBOOT_SCRIPT)[0] == 0o755
    assert not (root / "var/tmp/firstboot-ran").exists() and not (root / "usr/sbin/policy-rc.d").exists()
    # visudo in the tree accepts what was written (the guest's own check, run again independently)
    subprocess.run(["chroot", str(root), "visudo", "-cf", "/etc/sudoers.d/alice"], check=True,
                   capture_output=True)


def test_a_failing_guest_tool_in_the_tree_is_a_build_error_quoting_it(tmp_path):
    from builder.errors import BuildError

    rdir = tmp_path / "recipes"
    rdir.mkdir()
    (rdir / "r.toml").write_text(customize_support.RECIPE_HEAD + textwrap.dedent("""
        [[customize.users]]
        name = "erin"
        groups = ["no-such-group"]
        """))
    spec = cz.CustomizeSpec.from_recipe(recipemod.load(rdir / "r.toml"), {})
    root = customize_support.base_tree(tmp_path / "root")
    with pytest.raises(BuildError) as exc:
        cz.apply(TreeEdit(root), spec)
    assert "creating user erin failed" in exc.value.message and "no-such-group" in exc.value.message
    assert "erin:" not in (root / "etc/passwd").read_text()
