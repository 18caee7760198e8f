"""converters.archive.tarsafe / tarread: our tar reader's rules on OVA and rootfs tarballs."""

from __future__ import annotations

import io
import tarfile

import pytest

import converters_support as S
from builder.errors import UnsafeImageError
from converters.archive import tarsafe
from converters.archive.caps import Caps


def _ova_refused(tmp_path, members, match, mode="w"):
    sent, marker = S.sentinel(tmp_path)
    tar = S.tar_with(tmp_path / "x.ova", members(sent), mode)
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeImageError, match=match):
        tarsafe.extract_ova(tar, dest)
    if dest.exists():
        S.assert_no_sentinel(dest, marker)
        assert not any(p.is_symlink() for p in dest.rglob("*"))


def test_ova_dotdot_member(tmp_path):
    _ova_refused(tmp_path, lambda s: [(S.member("../x"), b"boom")], r"goes up a folder")
    assert not (tmp_path / "x").exists()


def test_ova_absolute_member(tmp_path):
    _ova_refused(tmp_path, lambda s: [(S.member(str(tmp_path / "abs")), b"boom")], "absolute name")
    assert not (tmp_path / "abs").exists()


def test_ova_symlink_out(tmp_path):
    _ova_refused(tmp_path, lambda s: [(S.member("disk.vmdk", tarfile.SYMTYPE, str(s)), None)],
                 "symlink to .*outside the archive")


def test_ova_hardlink_out(tmp_path):
    _ova_refused(tmp_path, lambda s: [(S.member("disk.vmdk", tarfile.LNKTYPE, str(s)), None)], "hard link")


def test_ova_device_node(tmp_path):
    _ova_refused(tmp_path, lambda s: [(S.member("disk.vmdk", tarfile.BLKTYPE), None)], "block device")


def test_ova_member_count_and_size_caps(tmp_path):
    tar = S.tar_with(tmp_path / "many.tar", [(S.member(f"f{i}"), b"x") for i in range(5)])
    with pytest.raises(UnsafeImageError, match="more than 3 members"):
        tarsafe.extract_ova(tar, tmp_path / "d1", Caps(max_members=3, max_member=1 << 20, max_total=1 << 20))
    big = S.tar_with(tmp_path / "big.tar", [(S.member("big"), b"y" * 5000)])
    with pytest.raises(UnsafeImageError, match="beyond 4096"):
        tarsafe.extract_ova(big, tmp_path / "d2", Caps(max_members=9, max_member=4096, max_total=1 << 20))


def test_tar_total_cap_counts_decompressed_bytes(tmp_path):
    tar = S.tar_with(tmp_path / "z.tar.gz", [(S.member(f"z{i}"), b"\0" * 300_000) for i in range(4)], "w:gz")
    assert tar.stat().st_size < 50_000
    with pytest.raises(UnsafeImageError, match="expands beyond"):
        tarsafe.extract_ova(tar, tmp_path / "d", Caps(max_members=9, max_member=1 << 20, max_total=1 << 20))


def test_corrupt_header_checksum_refused(tmp_path):
    tar = S.tar_with(tmp_path / "c.tar", [(S.member("a"), b"hello")])
    b = bytearray(tar.read_bytes())
    b[0] ^= 0x20
    tar.write_bytes(b)
    with pytest.raises(UnsafeImageError, match="checksum"):
        tarsafe.extract_ova(tar, tmp_path / "d")


def test_oversize_pax_header_refused_before_reading_it(tmp_path):
    ti = S.member("a")
    ti.pax_headers = {"comment": "x" * (2 << 20)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.addfile(ti, io.BytesIO(b""))
    (tmp_path / "p.tar").write_bytes(buf.getvalue())
    with pytest.raises(UnsafeImageError, match="metadata header"):
        tarsafe.extract_ova(tmp_path / "p.tar", tmp_path / "d")


def _rootfs_tar(tmp_path, extra):
    base = [(S.member("./", tarfile.DIRTYPE, mode=0o755), None), (S.member("./etc", tarfile.DIRTYPE), None),
            (S.member("./etc/hostname"), b"ct\n"), (S.member("./bin", tarfile.SYMTYPE, "usr/bin"), None),
            (S.member("./etc/resolv.conf", tarfile.SYMTYPE, "/run/systemd/resolve/stub-resolv.conf"), None),
            (S.member("./etc/hostname.lnk", tarfile.LNKTYPE, "./etc/hostname"), None),
            (S.member("./dev", tarfile.DIRTYPE), None), (S.member("./dev/null", tarfile.CHRTYPE), None)]
    return S.tar_with(tmp_path / "rootfs.tar.xz", base + extra, "w:xz")


def test_rootfs_keeps_symlinks_and_inside_hardlinks_and_skips_devices(tmp_path):
    src = _rootfs_tar(tmp_path, [])
    rep = tarsafe.sanitize_rootfs(src, tmp_path / "clean.tar")
    assert rep.skipped and rep.skipped[0].startswith("dev/null: character device")
    with tarfile.open(tmp_path / "clean.tar") as t:
        got = {m.name: m for m in t.getmembers()}
    assert got["./etc/resolv.conf"].issym() and got["./etc/resolv.conf"].linkname.startswith("/run/")
    assert got["./etc/hostname.lnk"].islnk() and got["./etc/hostname.lnk"].linkname == "./etc/hostname"
    assert "./dev/null" not in got and "./dev" in got
    assert t and rep.files == ["etc/hostname"]


def test_rootfs_hardlink_out_refused(tmp_path):
    sent, _ = S.sentinel(tmp_path)
    src = _rootfs_tar(tmp_path, [(S.member("./etc/shadow", tarfile.LNKTYPE, str(sent)), None)])
    with pytest.raises(UnsafeImageError, match="absolute name"):
        tarsafe.sanitize_rootfs(src, tmp_path / "clean.tar")
    src = _rootfs_tar(tmp_path, [(S.member("./etc/shadow", tarfile.LNKTYPE, "etc/missing"), None)])
    with pytest.raises(UnsafeImageError, match="does not name an earlier file"):
        tarsafe.sanitize_rootfs(src, tmp_path / "clean2.tar")


def test_rootfs_write_through_symlink_refused(tmp_path):
    src = _rootfs_tar(tmp_path, [(S.member("./evil", tarfile.SYMTYPE, "/etc"), None),
                                 (S.member("./evil/passwd"), b"root::0:0::/:/bin/sh\n")])
    with pytest.raises(UnsafeImageError, match="through the symlink 'evil'"):
        tarsafe.sanitize_rootfs(src, tmp_path / "clean.tar")


def test_rootfs_folder_walk_keeps_links_and_skips_nothing_regular(tmp_path):
    root = tmp_path / "ct"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("ct\n")
    (root / "etc/mtab").symlink_to("/proc/self/mounts")
    rep = tarsafe.rootfs_from_dir(root, tmp_path / "ct.tar")
    with tarfile.open(tmp_path / "ct.tar") as t:
        got = {m.name: m for m in t.getmembers()}
    assert got["./etc/mtab"].issym() and got["./etc/mtab"].linkname == "/proc/self/mounts"
    assert rep.files == ["etc/hostname"]


def test_corrupt_compressed_stream_refused_with_a_reason(tmp_path):
    tar = S.tar_with(tmp_path / "c.tar.gz", [(S.member(f"f{i}"), bytes(range(256)) * 400) for i in range(3)], "w:gz")
    b = bytearray(tar.read_bytes())
    b[len(b) // 2:len(b) // 2 + 64] = b"\xff" * 64
    tar.write_bytes(b)
    with pytest.raises(UnsafeImageError, match="corrupt compressed archive|checksum"):
        tarsafe.extract_ova(tar, tmp_path / "d")
