"""builder.exports.vagrant: the box's files and metadata, and `vagrant box add` (Debian's vagrant
with vagrant-libvirt, VAGRANT_HOME in a temporary directory) accepting it."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

from builder.exports import vagrant


@pytest.mark.parametrize("size,gb", [(1, 1), (64 << 20, 1), (1 << 30, 1), ((1 << 30) + 1, 2), (10 << 30, 10)])
def test_virtual_size_rounds_up_to_whole_gib(size, gb):
    assert vagrant.virtual_size_gb(size) == gb


def test_box_contents(exported, tmp_path):
    with tarfile.open(exported.dir / "tiny.vagrant-libvirt.box", "r:gz") as tar:
        assert sorted(tar.getnames()) == ["Vagrantfile", "box.img", "metadata.json"]
        tar.extractall(tmp_path)
    assert json.loads((tmp_path / "metadata.json").read_text()) == {
        "provider": "libvirt", "format": "qcow2", "virtual_size": 1}
    vf = (tmp_path / "Vagrantfile").read_text()
    assert "libvirt.memory = 512" in vf and "libvirt.cpus = 2" in vf and 'libvirt.driver = "kvm"' in vf
    subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", str(exported.src),
                    str(tmp_path / "box.img")], check=True, capture_output=True)


def test_vagrant_box_add_accepts_it(exported, tmp_path):
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "vagrant"), VAGRANT_CHECKPOINT_DISABLE="1")
    res = subprocess.run(["vagrant", "box", "add", "--name", "ironforge/tiny",
                          str(exported.dir / "tiny.vagrant-libvirt.box")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    listed = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert "ironforge/tiny (libvirt, 0)" in listed.stdout
    box = tmp_path / "vagrant" / "boxes" / "ironforge-VAGRANTSLASH-tiny" / "0" / "libvirt"
    assert sorted(p.name for p in box.iterdir()) == ["Vagrantfile", "box.img", "metadata.json"]
