"""Host paths a recipe names resolve inside its folder or an allowed directory, whatever the
spelling (absolute, .., symlinks, ~, loops)."""

from __future__ import annotations

import os

import pytest

from builder import hostpaths, settings
from builder.errors import UsageError


@pytest.fixture()
def layout(tmp_path):
    rdir, other = tmp_path / "recipe", tmp_path / "other"
    (rdir / "sub").mkdir(parents=True)
    other.mkdir()
    (rdir / "sub" / "in.txt").write_text("in")
    (other / "out.txt").write_text("out")
    (rdir / "out-link").symlink_to(other / "out.txt")
    (rdir / "dir-link").symlink_to(other)
    (rdir / "loop").symlink_to(rdir / "loop")
    return rdir, other


@pytest.mark.parametrize("given", ["sub/in.txt", "sub/../sub/in.txt", "./sub/in.txt"])
def test_inside_resolves_to_the_real_path(layout, given):
    rdir, _ = layout
    assert hostpaths.resolve(given, rdir, key="k", recipe="r.toml") == (rdir / "sub" / "in.txt").resolve()


@pytest.mark.parametrize("given", ["out-link", "dir-link/out.txt", "../other/out.txt", "/etc/hostname",
                                   "~/.bashrc", "sub/../../other/out.txt"])
def test_outside_is_refused_naming_path_recipe_and_flag(layout, given):
    rdir, _ = layout
    with pytest.raises(UsageError) as ei:
        hostpaths.resolve(given, rdir, key="customize.files[0].source", recipe="/r/x.toml")
    e = ei.value
    assert e.exit_code == 2 and repr(given) in e.message and "/r/x.toml" in e.message
    assert "customize.files[0].source" in e.message
    assert hostpaths.FLAG in e.hint and hostpaths.ENV_VAR in e.hint


def test_a_symlink_loop_neither_raises_nor_escapes(layout):
    rdir, _ = layout
    # inside the folder, so allowed; reading it then fails as an unreadable file would
    assert hostpaths.resolve("loop", rdir, key="k", recipe="r").is_relative_to(rdir.resolve())


def test_an_allowed_directory_widens_exactly_itself(layout):
    rdir, other = layout
    assert hostpaths.resolve("out-link", rdir, [other], key="k", recipe="r") == other / "out.txt"
    assert hostpaths.resolve(str(other / "out.txt"), rdir, [other], key="k", recipe="r") == other / "out.txt"
    with pytest.raises(UsageError):      # a sibling of the allowed directory is still outside
        hostpaths.resolve(str(other.parent / "recipe2"), rdir, [other], key="k", recipe="r")
    # a directory whose name only starts like the allowed one is not inside it
    (other.parent / "other-evil").mkdir()
    with pytest.raises(UsageError):
        hostpaths.resolve(str(other.parent / "other-evil" / "x"), rdir, [other], key="k", recipe="r")


def test_env_setting_splits_on_pathsep():
    assert hostpaths.from_env({hostpaths.ENV_VAR: f"/a{os.pathsep}{os.pathsep}/b"}) == \
        (hostpaths.Path("/a"), hostpaths.Path("/b"))
    assert hostpaths.from_env({}) == ()


def test_outside_lists_every_host_path_setting_and_file_secret(layout):
    rdir, other = layout
    values = {"sources": [{"name": "s", "path": "sub/in.txt"}, {"name": "t", "path": "out-link"}],
              "customize": {"root_password": {"file": "../other/out.txt"},
                            "users": [{"name": "a", "password": {"env": "X"}}],
                            "files": [{"path": "/x", "source": "dir-link/out.txt"}]}}
    got = hostpaths.outside(values, rdir, (), settings.host_file_paths(), settings.secret_paths())
    assert [(k, g) for k, g, _ in got] == [("sources[1].path", "out-link"),
                                           ("customize.root_password", "../other/out.txt"),
                                           ("customize.files[0].source", "dir-link/out.txt")]
    assert all(r == other / "out.txt" for _, _, r in got)
    assert hostpaths.outside(values, rdir, (other,), settings.host_file_paths(), settings.secret_paths()) == []
