"""Reading .deb files in Python: ar members, data.tar streamed, members verified into the store."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from builder.errors import ChecksumError, FetchError, MissingEnvironment
from builder.fetch.deb import ar_members, extract_verified

from fetch_support import assert_store_sane, make_deb, stored


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.mark.parametrize("comp", ["xz", "gz"])
def test_extract_members_and_follow_symlinks(tmp_path, store, comp):
    deb = tmp_path / "x.deb"
    make_deb(deb, {"usr/lib/a/linux": b"K" * 1001, "usr/lib/a/initrd.gz": b"I" * 77},
             symlinks={"usr/lib/b/linux": "../a/linux"}, compression=comp)
    # binutils ar agrees about the layout of what the helper wrote
    assert subprocess.run(["ar", "t", str(deb)], capture_output=True, text=True, check=True).stdout \
        .split() == ["debian-binary", "control.tar.xz", f"data.tar.{comp}"]
    assert [m.name for m in ar_members(deb)] == ["debian-binary", "control.tar.xz", f"data.tar.{comp}"]
    got = extract_verified(deb, {"usr/lib/b/linux": sha(b"K" * 1001),
                                 "usr/lib/a/initrd.gz": sha(b"I" * 77)}, store, what="t")
    assert got["usr/lib/b/linux"].read_bytes() == b"K" * 1001
    assert got["usr/lib/a/initrd.gz"] == store.download_path(sha(b"I" * 77))
    assert_store_sane(store)


def test_member_not_matching_signed_digest_is_not_kept(tmp_path, store):
    deb = tmp_path / "x.deb"
    make_deb(deb, {"f": b"evil"})
    with pytest.raises(ChecksumError) as ei:
        extract_verified(deb, {"f": sha(b"good")}, store, what="pkg")
    assert sha(b"good") in ei.value.message and sha(b"evil") in ei.value.message
    assert stored(store) == []
    assert list(store.download_tmpdir().iterdir()) == []


def test_missing_member_and_not_a_deb(tmp_path, store):
    deb = tmp_path / "x.deb"
    make_deb(deb, {"f": b"1"})
    with pytest.raises(FetchError) as ei:
        extract_verified(deb, {"g": sha(b"1")}, store, what="pkg")
    assert "does not contain g" in ei.value.message
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 zip, not ar")
    with pytest.raises(FetchError):
        ar_members(bad)


def test_zstd_data_member(tmp_path, store):
    """data.tar.zst needs the 'zstandard' module: extracted with it, a clear error without it."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("./f")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    zst = subprocess.run(["zstd", "-q", "-c"], input=buf.getvalue(), capture_output=True,
                         check=True).stdout
    deb = tmp_path / "z.deb"
    out = bytearray(b"!<arch>\n")
    for name, data in [("debian-binary", b"2.0\n"), ("data.tar.zst", zst)]:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    deb.write_bytes(bytes(out))
    try:
        import zstandard  # noqa: F401
    except ImportError:
        with pytest.raises(MissingEnvironment) as ei:
            extract_verified(deb, {"f": sha(b"abc")}, store, what="pkg")
        assert "zstandard" in ei.value.message and "python3-zstandard" in ei.value.hint
    else:
        got = extract_verified(deb, {"f": sha(b"abc")}, store, what="pkg")
        assert got["f"].read_bytes() == b"abc"
