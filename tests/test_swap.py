"""The atomic steps publish (and versioned outputs) are built from."""

from __future__ import annotations

import os

from builder import swap


def test_replace_dir_first_time_then_exchange(tmp_path):
    final = tmp_path / "out"
    a = swap.work_dir(tmp_path, "out")
    (a / "f").write_text("a")
    swap.replace_dir(a, final)
    assert (final / "f").read_text() == "a" and not a.exists()
    held = os.open(final, os.O_RDONLY | os.O_DIRECTORY)   # a reader inside the old output
    try:
        b = swap.work_dir(tmp_path, "out")
        (b / "f").write_text("b")
        swap.replace_dir(b, final)
        assert (final / "f").read_text() == "b"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old one removed
    finally:
        os.close(held)


def test_exchange_swaps_two_names(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "x").write_text("from a")
    b.write_text("a file")
    swap.exchange(a, b)
    assert (b / "x").read_text() == "from a" and a.read_text() == "a file"


def test_flip_symlink_replaces_a_link_in_one_step(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    link = tmp_path / "latest"
    swap.flip_symlink(link, "v1")
    swap.flip_symlink(link, "v2")
    assert os.readlink(link) == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "v1", "v2"]


def test_sweep_takes_dead_runs_debris_only(tmp_path):
    output = tmp_path / "output"
    mine = swap.work_dir(output, "pub")       # our own pid: alive
    dead = output / ".pub.tmp-999999999-xyz"  # beyond any pid_max: never alive
    dead.mkdir()
    old_style = output / ".pub.old-999999999"  # what earlier versions of publish left
    old_style.mkdir()
    kept = output / ".hidden-by-a-user"
    kept.mkdir()
    assert sorted(swap.sweep(output)) == sorted([dead, old_style])
    assert mine.is_dir() and kept.is_dir()
