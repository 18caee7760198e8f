"""A stage's named outputs are checked, and its files made read-only, when it is committed."""

from __future__ import annotations

import os

import pytest

import engine_fakes as F
from builder.errors import BuildError
from builder.stage import Output, StageDef


def _writes(setup, files):
    def run(ctx, inputs):
        setup(ctx.workdir)
        return Output(files=files)
    return StageDef("liar", 1, (), run)


@pytest.mark.parametrize("setup,files,words", [
    (lambda w: None, {"image": "gone.qcow2"}, "did not write"),
    (lambda w: (w / "d").mkdir(), {"image": "d"}, "not a regular file"),
    (lambda w: os.symlink("/etc/hostname", w / "l"), {"image": "l"}, "outside its work directory"),
    (lambda w: os.symlink("../../../x", w / "l"), {"image": "l"}, "outside its work directory"),
    (lambda w: os.symlink("missing", w / "l"), {"image": "l"}, "not a regular file"),
    (lambda w: None, {"image": "../x"}, "not a relative path"),
], ids=["missing", "directory", "absolute-symlink", "escaping-symlink", "dangling-symlink", "dotdot"])
def test_a_stage_naming_a_file_it_did_not_write_fails_at_commit(tmp_path, setup, files, words):
    cache = tmp_path / "cache"
    eng = F.engine(cache, tmp_path)
    with pytest.raises(BuildError, match=words) as exc:
        eng.run(F.recipe(x=1), [F.A, _writes(setup, files)])
    assert "stage liar: output 'image'" in exc.value.message
    # nothing of the failed stage is in the cache; the stage before it is
    entries = [d for d in (cache / "stages").iterdir() if d.name != "tmp"]
    assert len(entries) == 1 and not any((cache / "stages" / "tmp").iterdir())


def test_relative_symlinks_inside_the_workdir_are_fine_and_files_read_only(tmp_path):
    def setup(w):
        (w / "sub").mkdir()
        (w / "sub" / "real.bin").write_bytes(b"x")
        os.symlink("sub/real.bin", w / "link.bin")
    r = F.engine(tmp_path / "cache", tmp_path).run(F.recipe(), [_writes(setup, {"image": "link.bin"})])
    art = r.artifacts["liar"]
    assert art.image.read_bytes() == b"x"
    assert (art.dir / "sub" / "real.bin").stat().st_mode & 0o777 == 0o444
