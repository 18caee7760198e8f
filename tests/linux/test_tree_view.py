"""TreeView: guest paths over a host tree, symlinks resolved inside the tree."""

import os

import pytest

from builder.linux import initramfs
from builder.linux.tree_view import TreeView


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "boot").mkdir()
    (root / "lib/modules/6.1.0-9-amd64").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text('ID=debian\n')
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    (root / "boot/initrd.img-6.1.0-9-amd64").write_bytes(b"x")
    (root / "boot/vmlinuz-6.1.0-9-amd64").write_bytes(b"k")
    os.symlink("/boot/vmlinuz-6.1.0-9-amd64", root / "vmlinuz")
    # escapes that must stay inside the tree
    (tmp_path / "secret").write_text("host file")
    os.symlink("/../../secret", root / "etc/abs-escape")
    os.symlink("../../../secret", root / "etc/rel-escape")
    os.symlink("loop2", root / "etc/loop1")
    os.symlink("loop1", root / "etc/loop2")
    return root


def test_relative_and_absolute_links_resolve_in_the_tree(tree):
    v = TreeView(tree)
    assert v.cat("/etc/os-release") == "ID=debian\n"
    assert v.is_file("/etc/os-release", followsymlinks=True) and not v.is_file("/etc/os-release")
    assert v.read_file("/vmlinuz") == b"k"


def test_no_link_reads_outside_the_tree(tree):
    v = TreeView(tree)
    for p in ("/etc/abs-escape", "/etc/rel-escape", "/../secret", "/etc/../../secret"):
        assert not v.is_file(p, followsymlinks=True)
        with pytest.raises(FileNotFoundError):
            v.cat(p)


def test_loops_and_missing_paths_are_not_files(tree):
    v = TreeView(tree)
    assert not v.exists("/etc/loop1") and not v.is_file("/nope", followsymlinks=True)
    with pytest.raises(FileNotFoundError):
        v.ls("/nope")
    with pytest.raises(FileNotFoundError):
        v.cat("/etc")


def test_the_image_readers_work_on_it(tree):
    # the same code the disk stage runs over the bootstrap tree
    assert initramfs.installed_kernels(TreeView(tree)) == ["6.1.0-9-amd64"]
    assert TreeView(tree).ls("/boot") == ["initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-9-amd64"]
