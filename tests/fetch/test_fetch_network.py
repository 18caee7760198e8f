"""The real archive: bookworm netboot installers for amd64 and i386 through the signature chain.

Here the images tree answers 404, so this goes through the debian-installer-12-netboot-<arch>
package (~130 MB each). Files land in a persistent cache ($IRONFORGE_TEST_CACHE, default
~/.cache/ironforge-test) that reruns and the installer tests reuse.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from builder.cache.store import Store
from builder.fetch import fetch_installer, inrelease

MIRROR = "http://deb.debian.org/debian"


@pytest.fixture(scope="session")
def test_store() -> Store:
    root = os.environ.get("IRONFORGE_TEST_CACHE") or str(Path.home() / ".cache" / "ironforge-test")
    return Store(Path(root))


@pytest.mark.network
def test_real_inrelease(test_store):
    rel = inrelease(MIRROR, "12", test_store)
    assert rel.fields["Codename"] == "bookworm"
    assert "main/installer-amd64/current/images/SHA256SUMS" in rel.files
    assert len(rel.inrelease_sha256) == 64


@pytest.mark.network
@pytest.mark.parametrize("arch", ["amd64", "i386"])
def test_real_netboot_installer(test_store, arch):
    files = {f.role: f for f in fetch_installer(test_store, mirror=MIRROR, release="12", arch=arch)}
    kernel, initrd = files["kernel"], files["initrd"]
    head = kernel.path.read_bytes()[:0x210]
    assert head[0x202:0x206] == b"HdrS", "a Linux bzImage"
    assert initrd.path.read_bytes()[:2] == b"\x1f\x8b", "a gzip'd initramfs"
    assert kernel.size > 1_000_000 and initrd.size > 10_000_000
    for f in (kernel, initrd):
        assert f.path.name == f.sha256
        assert hashlib.sha256(f.path.read_bytes()).hexdigest() == f.sha256
        assert f.url.endswith(f"/installer-{arch}/current/images/netboot/debian-installer/{arch}/"
                              + ("linux" if f.role == "kernel" else "initrd.gz"))
    # offline again: no network, same files
    again = {f.role: f for f in fetch_installer(test_store, mirror=MIRROR, release="12", arch=arch,
                                                offline=True)}
    assert again["kernel"].path == kernel.path and again["initrd"].path == initrd.path
