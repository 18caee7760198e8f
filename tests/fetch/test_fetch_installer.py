"""The installer chain against a signed fake archive: images tree, package fallback, failures."""

from __future__ import annotations

import pytest

from builder.errors import ChecksumError, FetchError, SignatureError
from builder.fetch.installer import fetch_installer

from fetch_support import Route, assert_store_sane, stored


def roles(files):
    return {f.role: f for f in files}


def test_netboot_from_images_tree(serve_archive, signer, store, fast, server):
    mirror, arc = serve_archive(images=True)
    got = roles(fetch_installer(store, mirror=mirror, release="12", arch="amd64",
                                keyrings=[signer.keyring], options=fast))
    assert got["kernel"].path.read_bytes() == arc.kernel
    assert got["initrd"].path.read_bytes() == arc.initrd
    assert got["kernel"].url == f"{mirror}/{arc.images}/netboot/debian-installer/amd64/linux"
    assert "InRelease" in got["kernel"].verified_by and "SHA256SUMS" in got["kernel"].verified_by
    deb_route = server.httpd.routes[mirror.removeprefix(server.base) +
                                    f"/pool/main/d/debian-installer-netboot-images/{arc.deb_name}"]
    assert deb_route.requests == [], "the package is not needed when the images tree answers"
    assert_store_sane(store)


def test_netboot_from_package_when_images_are_404(serve_archive, signer, store, fast, server):
    mirror, arc = serve_archive(images=False)
    got = roles(fetch_installer(store, mirror=mirror, release="12", arch="amd64",
                                keyrings=[signer.keyring], options=fast))
    assert got["kernel"].path.read_bytes() == arc.kernel
    assert got["initrd"].path.read_bytes() == arc.initrd
    assert got["kernel"].size == len(arc.kernel)
    assert_store_sane(store)
    # and again offline: InRelease from the cache, verified again; files by digest
    again = roles(fetch_installer(store, mirror=mirror, release="bookworm", arch="amd64",
                                  keyrings=[signer.keyring], offline=True))
    assert again["kernel"].path == got["kernel"].path
    assert again["kernel"].verified_by == got["kernel"].verified_by


def test_i386_archive_with_gzip_index(serve_archive, signer, store, fast):
    mirror, arc = serve_archive(images=False, arch="i386", index="gz")
    got = roles(fetch_installer(store, mirror=mirror, release="12", arch="i386",
                                keyrings=[signer.keyring], options=fast))
    assert got["kernel"].path.read_bytes() == arc.kernel


def test_packaged_file_differing_from_signed_sums_is_refused(serve_archive, signer, store, fast):
    mirror, arc = serve_archive(images=False, packaged_kernel=b"trojan kernel")
    with pytest.raises(ChecksumError) as ei:
        fetch_installer(store, mirror=mirror, release="12", arch="amd64", keyrings=[signer.keyring],
                        options=fast)
    assert "linux" in ei.value.message
    assert all(p.read_bytes() != b"trojan kernel" for p in stored(store))
    assert_store_sane(store)


def test_image_differing_from_signed_sums_is_refused(serve_archive, signer, store, fast, server):
    mirror, arc = serve_archive(images=True)
    # the mirror serves another kernel than the signed SHA256SUMS lists
    server.add(mirror.removeprefix(server.base) + f"/{arc.images}/netboot/debian-installer/amd64/linux",
               Route(data=b"another kernel"))
    with pytest.raises(ChecksumError):
        fetch_installer(store, mirror=mirror, release="12", arch="amd64", keyrings=[signer.keyring],
                        options=fast)
    assert_store_sane(store)
    assert all(p.read_bytes() != b"another kernel" for p in stored(store))


def test_mini_iso_from_images_tree(serve_archive, signer, store, fast):
    mirror, arc = serve_archive(images=True)
    [iso] = fetch_installer(store, mirror=mirror, release="12", arch="amd64", image="mini.iso",
                            keyrings=[signer.keyring], options=fast)
    assert iso.role == "iso" and iso.path.read_bytes() == arc.iso


def test_mini_iso_without_images_tree_says_why(serve_archive, signer, store, fast):
    mirror, _ = serve_archive(images=False)
    with pytest.raises(FetchError) as ei:
        fetch_installer(store, mirror=mirror, release="12", arch="amd64", image="mini.iso",
                        keyrings=[signer.keyring], options=fast)
    assert "not in the debian-installer-12-netboot-amd64 package" in ei.value.message
    assert "netboot" in ei.value.hint


def test_offline_with_nothing_cached(serve_archive, signer, store):
    mirror, _ = serve_archive()
    with pytest.raises(FetchError) as ei:
        fetch_installer(store, mirror=mirror, release="12", arch="amd64", keyrings=[signer.keyring],
                        offline=True)
    assert "InRelease" in ei.value.message and "without --offline" in ei.value.hint


def test_arch_without_installer(serve_archive, signer, store, fast):
    mirror, _ = serve_archive()
    with pytest.raises(SignatureError) as ei:
        fetch_installer(store, mirror=mirror, release="12", arch="i386", keyrings=[signer.keyring],
                        options=fast)
    assert "i386" in ei.value.message
