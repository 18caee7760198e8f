"""builder/linux/initrd.py: the pure-Python newc writer, read back with GNU cpio (independent)."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
from pathlib import Path

import pytest

from builder.cache.store import Store
from builder.linux import initrd
from builder.stages import install

MIRROR = "http://deb.debian.org/debian"


def cpio_list(archive: bytes) -> list[str]:
    res = subprocess.run(["cpio", "-t", "--quiet"], input=archive, capture_output=True, check=True)
    return res.stdout.decode().splitlines()


def cpio_cat(archive: bytes, name: str) -> bytes:
    res = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", name], input=archive,
                         capture_output=True, check=True)
    return res.stdout


def cpio_verbose(archive: bytes) -> list[str]:
    res = subprocess.run(["cpio", "-tv", "--quiet", "--numeric-uid-gid"], input=archive,
                         capture_output=True, check=True)
    return res.stdout.decode().splitlines()


def test_newc_archive_reads_back_with_gnu_cpio():
    members = [initrd.Member("etc", kind=stat.S_IFDIR, mode=0o755),
               initrd.Member("etc/inittab", b"::sysinit:/bin/true\n"),
               initrd.Member("preseed.cfg", b"d-i x/y string z\n", mode=0o600),
               initrd.Member("empty", b""),
               initrd.Member("odd-length-name.txt", b"abc")]       # exercises the 4-byte padding
    blob = initrd.newc_archive(members)
    assert cpio_list(blob) == ["etc", "etc/inittab", "preseed.cfg", "empty", "odd-length-name.txt"]
    assert cpio_cat(blob, "preseed.cfg") == b"d-i x/y string z\n"
    assert cpio_cat(blob, "odd-length-name.txt") == b"abc"
    modes = {line.split()[-1]: line.split()[0] for line in cpio_verbose(blob)}
    assert modes == {"etc": "drwxr-xr-x", "etc/inittab": "-rw-r--r--", "preseed.cfg": "-rw-------",
                     "empty": "-rw-r--r--", "odd-length-name.txt": "-rw-r--r--"}
    # owned by root, mtime 0: the bytes depend on the content only
    assert all(" 0 " in line and "1970" in line for line in cpio_verbose(blob))
    assert initrd.newc_archive(members) == blob


@pytest.mark.parametrize("name", ["", "/", "a/../b", "./x/./y", "nul\0byte"])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError):
        initrd.newc_archive([initrd.Member(name, b"x")])


def test_append_keeps_the_original_bytes_and_adds_one_gzip_member(tmp_path):
    original = gzip.compress(initrd.newc_archive([initrd.Member("init", b"#!/bin/sh\n", mode=0o755),
                                                  initrd.Member("etc/inittab", b"old\n")]))
    src, dst = tmp_path / "initrd.gz", tmp_path / "new.gz"
    src.write_bytes(original)
    initrd.append_members(src, dst, [initrd.Member("preseed.cfg", b"P\n"),
                                     initrd.Member("etc/inittab", b"new\n")])
    data = dst.read_bytes()
    assert data[:len(original)] == original
    extra = gzip.decompress(data[len(original):])
    assert cpio_list(extra) == ["preseed.cfg", "etc/inittab"]
    # what the kernel sees: later archives win
    assert initrd.read_file(dst, "/etc/inittab") == b"new\n"
    assert initrd.read_file(dst, "preseed.cfg") == b"P\n"
    assert initrd.read_file(dst, "init") == b"#!/bin/sh\n"
    assert initrd.read_file(dst, "missing") is None


# -- the real bookworm installer initrd, fetched and verified by builder.fetch --------------------

@pytest.fixture(scope="module")
def real_initrd() -> Path:
    from builder.fetch import fetch_installer

    root = os.environ.get("IRONFORGE_TEST_CACHE") or str(Path.home() / ".cache" / "ironforge-test")
    files = {f.role: f for f in fetch_installer(Store(Path(root)), mirror=MIRROR, release="12",
                                                arch="amd64")}
    return files["initrd"].path


@pytest.mark.network
def test_preseed_injected_into_the_real_installer_initrd(real_initrd, tmp_path):
    text = "d-i debian-installer/locale string en_US.UTF-8\nd-i mirror/country string manual\n"
    dst = tmp_path / "initrd.gz"
    install.installer_initrd(real_initrd, dst, text)

    original = real_initrd.read_bytes()
    data = dst.read_bytes()
    assert data[:len(original)] == original, "the original initrd is kept byte for byte"
    # Split at the boundary and list each part with GNU cpio, not with the module under test.
    base_listing = cpio_list(gzip.decompress(original))
    added = gzip.decompress(data[len(original):])
    assert cpio_list(added) == ["preseed.cfg", "etc/inittab"]
    assert "preseed.cfg" not in base_listing and "./preseed.cfg" not in base_listing
    assert {"init", "etc/inittab", "sbin/debian-installer", "bin/busybox"} <= \
        {n.removeprefix("./") for n in base_listing}
    # the kernel unpacks both in order, so /preseed.cfg is exactly the generated text …
    assert cpio_cat(added, "preseed.cfg").decode() == text
    # … and /etc/inittab is the installer's own plus the line streaming syslog to ttyS1
    old_tab = cpio_cat(gzip.decompress(original), "etc/inittab").decode()
    new_tab = cpio_cat(added, "etc/inittab").decode()
    assert new_tab.startswith(old_tab.rstrip("\n"))
    assert new_tab.splitlines()[-1] == install.SYSLOG_INITTAB
    assert "/sbin/reopen-console /sbin/debian-installer-startup" in new_tab
