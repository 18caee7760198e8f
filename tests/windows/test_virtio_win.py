"""Reading a STAND-IN virtio-win tree (directory and ISO) and selecting drivers (spec §1.4)."""

import os
from pathlib import Path

import pytest

from builder.errors import VirtioWinError
from builder.windows import versions as V
from builder.windows import virtio_win as VW
from windows import standin_virtio_win as S

# what a Windows 10 guest must get, per arch (by-driver w10 files, flattened, lowercase)
W10 = sorted({
    "viostor.inf", "viostor.sys", "viostor.cat", "vioscsi.inf", "vioscsi.sys", "vioscsi.cat",
    "netkvm.inf", "netkvm.sys", "netkvm.cat", "netkvmco.exe", "netkvmp.exe",
    "balloon.inf", "balloon.sys", "balloon.cat", "blnsvr.exe",
    "vioser.inf", "vioser.sys", "vioser.cat", "viorng.inf", "viorng.sys", "viorng.cat",
    "vioinput.inf", "vioinput.sys", "vioinput.cat", "viofs.inf", "viofs.sys", "viofs.cat",
    "pvpanic.inf", "pvpanic.sys", "pvpanic.cat", "qemupciserial.inf", "qemupciserial.cat",
    "fwcfg.inf", "fwcfg.sys", "fwcfg.cat"})      # qemufwcfg.* dropped: fwcfg is there


@pytest.fixture(scope="module", params=["directory", "iso"])
def source(request, standin_vw):
    tree, iso = standin_vw
    with VW.VirtioWinSource(tree if request.param == "directory" else iso) as src:
        yield src


@pytest.mark.parametrize("release,arch,folder,archdir", [
    ("10", "x86", "w10", "x86"), ("10", "amd64", "w10", "amd64"), ("11", "amd64", "w11", "amd64"),
    ("server-2019", "amd64", "2k19", "amd64"), ("server-2022", "amd64", "2k22", "amd64")])
def test_select_stand_in_new_windows(source, release, arch, folder, archdir):
    files = VW.select(source, V.by_release(release), arch)
    assert [f.target for f in files] == W10
    for f in files:
        data = f.read()
        # the bytes came from this OS and arch: never ARM64, never the other arch, never another OS
        assert data.startswith(b"stand-in virtio-win: ")
        origin = data.decode().split(": ", 1)[1].strip()
        assert f"/{folder}/{archdir}/" in origin, (f.target, origin)
        assert f.size == len(data)
    assert {f.driver for f in files if f.suffix == ".sys"} == {
        "viostor", "vioscsi", "netkvm", "balloon", "vioserial", "viorng", "vioinput", "viofs",
        "pvpanic", "fwcfg"}


def test_select_stand_in_windows7_x86_keeps_qemufwcfg_without_fwcfg(source):
    files = VW.select(source, V.by_release("7"), "i686")
    targets = [f.target for f in files]
    assert "qemufwcfg.inf" in targets and "fwcfg.inf" not in targets
    assert "vioinput.sys" not in targets          # the stand-in ships it only for w10+
    assert all(b"/w7/x86/" in f.read() for f in files)


def test_select_never_pdb_sriov_or_vioprot(source):
    for release, arch in (("10", "x86"), ("10", "amd64"), ("11", "amd64")):
        for f in VW.select(source, V.by_release(release), arch):
            assert not f.target.endswith(".pdb")
            assert not f.target.startswith("vioprot.")
            assert "sriov" not in f.source_path.lower()
            assert "arm64" not in f.source_path.lower()


def test_select_by_path_reads_and_closes(standin_vw):
    tree, iso = standin_vw
    a = VW.select(iso, V.by_release("10"), "x86")
    b = VW.select(tree, V.by_release("10"), "x86")
    assert [(f.target, f.read()) for f in a] == [(f.target, f.read()) for f in b]


def test_no_driver_for_version_names_both_and_what_is_offered(tmp_path):
    tree = S.make_tree(tmp_path / "vw", [p for p in S.path_list() if "/2k25/" not in p])
    with pytest.raises(VirtioWinError) as ei:
        VW.select(tree, V.by_release("server-2025"), "amd64")
    msg = ei.value.message
    assert "Windows Server 2025" in msg and "2k25" in msg and "amd64" in msg
    assert "w10/amd64" in msg and "w11/arm64" in msg and "2k22/amd64" in msg
    assert ei.value.exit_code == 2 and ei.value.hint


def test_arm64_only_tree_offers_nothing_for_amd64(tmp_path):
    tree = S.make_tree(tmp_path / "vw", [p for p in S.path_list() if "/ARM64/" in p])
    with pytest.raises(VirtioWinError, match="w11/arm64"):
        VW.select(tree, V.by_release("11"), "amd64")


def test_links_out_of_the_tree_are_never_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "viostor.sys").write_bytes(b"host secret")
    tree = S.make_tree(tmp_path / "vw", [p for p in S.path_list() if p.startswith("viostor/w10/")])
    os.symlink(secret / "viostor.sys", tree / "viostor/w10/amd64/extra.sys")
    os.symlink(secret, tree / "vioscsi")                                  # a dir link out
    (tree / "viostor/w11").mkdir()
    os.symlink(tree / "viostor/w10/amd64", tree / "viostor/w11/amd64")    # a dir link inside
    src = VW.VirtioWinSource(tree)
    paths = [e.path for e in src.entries]
    assert not any("extra.sys" in p or p.startswith("vioscsi") for p in paths)
    assert "viostor/w11/amd64/viostor.sys" in paths
    files = VW.select(src, V.by_release("10"), "amd64")
    assert all(f.read() != b"host secret" for f in files)


def test_case_insensitive_path_elements(tmp_path):
    tree = S.make_tree(tmp_path / "vw", ["VIOSTOR/W10/AMD64/VioStor.SYS", "VIOSTOR/W10/AMD64/VIOSTOR.INF"])
    files = VW.select(tree, V.by_release("10"), "x86_64")
    assert [(f.target, f.driver) for f in files] == [("viostor.inf", "viostor"), ("viostor.sys", "viostor")]


def test_not_an_iso_is_a_clear_error(tmp_path):
    bad = tmp_path / "virtio-win.iso"
    bad.write_bytes(b"<html>bot check</html>" * 200)      # the quickemu#1918 case
    with pytest.raises(VirtioWinError, match="not a readable ISO"):
        VW.VirtioWinSource(bad)
    with pytest.raises(VirtioWinError, match="no such file"):
        VW.VirtioWinSource(tmp_path / "missing")


def test_oversize_file_is_refused(tmp_path, monkeypatch):
    tree = S.make_tree(tmp_path / "vw", ["viostor/w10/amd64/viostor.sys"])
    monkeypatch.setattr(VW, "MAX_FILE_BYTES", 8)
    with pytest.raises(VirtioWinError, match="over the"):
        VW.select(tree, V.by_release("10"), "amd64")


def test_iso_uses_rock_ridge_names(standin_vw):
    _tree, iso = standin_vw
    with VW.VirtioWinSource(iso) as src:
        assert src.kind == "iso"
        paths = {e.path for e in src.entries}
    assert "NetKVM/w8.1/amd64/netkvm.sys" in paths and "Balloon/2k12R2/amd64/blnsvr.exe" in paths


def test_a_link_loop_ends(tmp_path):
    tree = S.make_tree(tmp_path / "vw", ["viostor/w10/amd64/viostor.sys"])
    os.symlink(tree / "viostor", tree / "viostor/w10/amd64/loop")
    src = VW.VirtioWinSource(tree)
    assert [e.path for e in src.entries] == ["viostor/w10/amd64/viostor.sys"]
