"""converters.stages.import_: every good input lands as qcow2 with identical contents
(qemu-img compare); a container rootfs becomes a clean rootfs.tar; hostile inputs are refused
and the workdir holds no byte of the sentinel host file."""

from __future__ import annotations

import shutil
import tarfile

import pytest

import converters_support as S
from builder.errors import UnsafeImageError
from converters.stages import import_

DESCRIPTOR = """<?xml version="1.0"?>
<Parallels_disk_image Version="1.0">
  <Disk_Parameters><Disk_size>32768</Disk_size><Cylinders>16</Cylinders><Heads>16</Heads>
    <Sectors>128</Sectors><Padding>0</Padding></Disk_Parameters>
  <StorageData><Storage><Start>0</Start><End>32768</End><Blocksize>2048</Blocksize>
    <Image><GUID>{{5fbaabe3-6958-40ff-92a7-860e329aab41}}</GUID><Type>Compressed</Type><File>{file}</File></Image>
  </Storage></StorageData>
  <Snapshots><TopGUID>{{5fbaabe3-6958-40ff-92a7-860e329aab41}}</TopGUID>
    <Shot><GUID>{{5fbaabe3-6958-40ff-92a7-860e329aab41}}</GUID><ParentGUID>{{00000000-0000-0000-0000-000000000000}}</ParentGUID></Shot>
  </Snapshots>
</Parallels_disk_image>
"""


def _import(tmp_path, srcs, name=None):
    ctx = S.stage_context(tmp_path, srcs, name)
    return ctx, import_.run(ctx, {})


@pytest.mark.parametrize("fmt,sub", S.GOOD)
def test_each_format_imports_with_identical_contents(good, tmp_path, fmt, sub):
    ctx, out = _import(tmp_path, [good[(fmt, sub)]])
    img = ctx.workdir / out.files["image"]
    assert S.same_contents(good["src"], "raw", img)
    assert S.same_contents(good[(fmt, sub)], fmt, img)
    assert out.data["vm"]["disks"][0]["format"] == fmt
    assert not (ctx.workdir / ".source").exists()


def _ploop(tmp_path, good, file="root.hds"):
    b = tmp_path / "101" / "root.hdd"
    b.mkdir(parents=True)
    shutil.copy(good[("parallels", None)], b / "root.hds")
    (b / "DiskDescriptor.xml").write_text(DESCRIPTOR.format(file=file))
    return b


def test_ploop_bundle_and_private_area(good, tmp_path):
    bundle = _ploop(tmp_path, good)
    for src in (bundle, bundle.parent):
        ctx, out = _import(tmp_path, [src])
        assert out.data["kind"] == "ploop" and out.data["vm"]["name"] == "101"
        assert S.same_contents(good["src"], "raw", ctx.workdir / out.files["image"])


@pytest.mark.parametrize("file,match", [("../sentinel", "goes up a folder"), ("SENT", "absolute path")])
def test_ploop_file_outside_the_bundle_refused(good, tmp_path, file, match):
    sent, marker = S.sentinel(tmp_path)
    bundle = _ploop(tmp_path, good, str(sent) if file == "SENT" else "../../sentinel")
    ctx = S.stage_context(tmp_path, [bundle])
    with pytest.raises(UnsafeImageError, match=match):
        import_.run(ctx, {})
    S.assert_no_sentinel(ctx.workdir, marker)


def test_ova_with_two_disks_in_order(good, tmp_path):
    d0, d1 = tmp_path / "a-disk0.vmdk", tmp_path / "b-disk1.vmdk"
    shutil.copy(good[("vmdk", "streamOptimized")], d0)
    S.qimg("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", good["src"], d1)
    folder = S.write_ova_folder(tmp_path / "o", [d1, d0], mf_algo="SHA256")
    ova = S.pack_tar(folder, tmp_path / "two.ova", "w:gz")
    ctx, out = _import(tmp_path, [ova])
    assert [d["file"] for d in out.data["disks"]] == ["disk0.qcow2", "disk1.qcow2"]
    assert [d["source"].rsplit("/", 1)[-1] for d in out.data["disks"]] == ["b-disk1.vmdk", "a-disk0.vmdk"]
    assert out.files == {"image": "disk0.qcow2", "disk1": "disk1.qcow2"}
    assert out.data["vm"]["nics"][0]["mac"] == "00:50:56:aa:bb:cc"
    for f in out.files.values():
        assert S.same_contents(good["src"], "raw", ctx.workdir / f)


def _hostile_qcow2(tmp_path):
    sent, marker = S.sentinel(tmp_path)
    h = tmp_path / "h.qcow2"
    S.qimg("create", "-q", "-f", "qcow2", "-u", "-b", sent, "-F", "raw", h, "16M")
    return h, marker


def test_hostile_disk_inside_an_ova_refused_without_leaking(tmp_path):
    h, marker = _hostile_qcow2(tmp_path)
    folder = S.write_ova_folder(tmp_path / "o", [h], mf_algo="SHA1")
    ctx = S.stage_context(tmp_path, [S.pack_tar(folder, tmp_path / "h.ova")])
    with pytest.raises(UnsafeImageError, match="backing file"):
        import_.run(ctx, {})
    S.assert_no_sentinel(ctx.workdir, marker)
    assert not (ctx.workdir / ".source").exists()


def test_rootfs_tarball_becomes_a_clean_rootfs_tar(tmp_path):
    src = S.tar_with(tmp_path / "ct.tar.gz", [
        (S.member("./", tarfile.DIRTYPE, mode=0o755), None), (S.member("./etc", tarfile.DIRTYPE), None),
        (S.member("./etc/os-release"), b"ID=debian\n"), (S.member("./dev", tarfile.DIRTYPE), None),
        (S.member("./dev/console", tarfile.CHRTYPE), None),
        (S.member("./sbin", tarfile.SYMTYPE, "usr/sbin"), None)], "w:gz")
    ctx, out = _import(tmp_path, [src])
    assert out.files == {"rootfs": "rootfs.tar"} and out.data["kind"] == "rootfs"
    assert out.data["skipped"] == ["dev/console: character device (a VM's /dev is made by the kernel)"]
    with tarfile.open(ctx.workdir / "rootfs.tar") as t:
        assert t.extractfile("./etc/os-release").read() == b"ID=debian\n"
        assert t.getmember("./sbin").issym()


def test_rootfs_folder_openvz_simfs_layout(tmp_path):
    fs = tmp_path / "101" / "fs"
    (fs / "etc").mkdir(parents=True)
    (fs / "etc/hostname").write_text("ct101\n")
    ctx, out = _import(tmp_path, [tmp_path / "101"])
    with tarfile.open(ctx.workdir / "rootfs.tar") as t:
        assert t.extractfile("./etc/hostname").read() == b"ct101\n"


def test_pins_change_when_the_source_changes(good, tmp_path):
    p = tmp_path / "d.qcow2"
    shutil.copy(good[("qcow2", None)], p)
    ctx = S.stage_context(tmp_path, [p])
    before = import_.pins(ctx)
    S.qimg("resize", "-q", "-f", "qcow2", p, "32M")
    assert import_.pins(ctx) != before


@pytest.mark.slow
def test_real_inputs_named_by_the_environment(tmp_path):
    """Real foreign VMs (an OVA exported by vSphere, a Hyper-V vhdx…), when
    IRONFORGE_TEST_CONVERT_INPUTS names them (':'-separated); each imports, disk by disk identical."""
    import os
    names = [p for p in os.environ.get("IRONFORGE_TEST_CONVERT_INPUTS", "").split(":") if p]
    if not names:
        pytest.skip("IRONFORGE_TEST_CONVERT_INPUTS names no real inputs")
    from pathlib import Path
    for n in names:
        ctx, out = _import(tmp_path, [Path(n)])
        if out.data["kind"] == "rootfs":
            assert (ctx.workdir / "rootfs.tar").stat().st_size > 0
            continue
        for d in out.data["disks"]:
            if out.data["kind"] != "ova" or Path(d["source"]).exists():
                assert S.same_contents(Path(d["source"]), d["format"], ctx.workdir / d["file"])


def test_name_is_part_of_the_key(good, tmp_path):
    a = import_.pins(S.stage_context(tmp_path, [good[("raw", None)]], "one"))
    b = import_.pins(S.stage_context(tmp_path, [good[("raw", None)]], "two"))
    assert a != b


def _recipe_ctx(tmp_path, body: str):
    import logging
    from builder import recipe as recipes
    from builder.cache.store import Store
    from builder.stage import StageContext
    f = tmp_path / "conv.toml"
    f.write_text('arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n[build]\nmethod = "convert"\n' + body)
    work = tmp_path / "w"
    work.mkdir()
    return StageContext(recipe=recipes.load(str(f)), accel=None, store=Store(tmp_path / "cache"), workdir=work,
                        log=logging.getLogger("test"))


def test_recipe_source_path_is_relative_to_the_recipe_and_its_sha256_checked(good, tmp_path):
    from builder.errors import ChecksumError
    shutil.copy(good[("vhdx", None)], tmp_path / "guest.vhdx")
    want = S.sha("sha256", tmp_path / "guest.vhdx")
    ctx = _recipe_ctx(tmp_path, f'[source.image]\npath = "guest.vhdx"\nsha256 = "{want}"\n')
    out = import_.run(ctx, {})
    assert S.same_contents(good["src"], "raw", ctx.workdir / out.files["image"])
    (tmp_path / "b").mkdir()
    bad = _recipe_ctx(tmp_path / "b", f'[source.image]\npath = "{tmp_path / "guest.vhdx"}"\nsha256 = "{"0" * 64}"\n')
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        import_.run(bad, {})
