"""The one overlay helper, against the real qemu-img."""

import os

from builder import qemu_img


def test_overlay_records_an_absolute_backing_path_and_the_format_it_was_told(tmp_path, monkeypatch):
    base = tmp_path / "base.raw"
    # a raw file that starts like a qcow2 header: only the stated format keeps it raw
    base.write_bytes(b"QFI\xfb" + bytes(1024 * 1024 - 4))
    monkeypatch.chdir(tmp_path)
    top = qemu_img.overlay(base.relative_to(tmp_path), tmp_path / "top.qcow2", backing_format="raw")
    info = qemu_img.info(top)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(base) and os.path.isabs(info["backing-filename"])
    assert info["backing-filename-format"] == "raw"
    assert info["virtual-size"] == 1024 * 1024


def test_overlay_defaults_to_a_qcow2_layer_over_a_qcow2_layer(tmp_path):
    base = tmp_path / "base.qcow2"
    qemu_img.run(["create", "-q", "-f", "qcow2", str(base), "4M"], "test base")
    top = qemu_img.overlay(base, tmp_path / "top.qcow2")
    info = qemu_img.info(top)
    assert info["backing-filename-format"] == "qcow2" and info["virtual-size"] == 4 * 1024 * 1024
