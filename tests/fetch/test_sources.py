"""A recipe's [[sources]] -> verified files: url, path and debian_installer kinds together."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from builder.errors import ChecksumError, FetchError, UsageError
from builder.fetch import fetch_sources
from builder.recipe import Recipe

from fetch_support import Route


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def recipe(sources, path=None, arch="amd64", mirror="http://deb.debian.org/debian"):
    return Recipe(name="t", path=path, values={
        "arch": arch, "os": {"family": "debian", "release": "12"},
        "build": {"method": "installer", "mirror": mirror}, "sources": sources})


def src(name, **kw):
    base = {"name": name, "url": None, "path": None, "sha256": None, "sha512": None,
            "debian_installer": None}
    base.update(kw)
    return base


def test_all_kinds_in_order(serve_archive, signer, server, store, fast, tmp_path):
    mirror, arc = serve_archive(images=False)
    blob = b"driver iso bytes"
    url = server.add(server.unique("drivers.iso"), Route(data=blob))
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "files").mkdir()
    (tmp_path / "recipes" / "files" / "answer.xml").write_bytes(b"<xml/>")
    r = recipe([
        src("drivers", url=url, sha512=hashlib.sha512(blob).hexdigest()),
        src("answer", path="files/answer.xml"),
        src("installer", debian_installer={"release": "12", "arch": None, "image": "netboot",
                                           "mirror": mirror}),
    ], path=tmp_path / "recipes" / "x.toml", mirror="http://unused.invalid/debian")
    files = fetch_sources(store, r, options=fast, keyrings=[signer.keyring])
    assert [f.name for f in files] == ["drivers", "answer", "installer.kernel", "installer.initrd"]
    by = {f.name: f for f in files}
    assert by["drivers"].path.read_bytes() == blob and by["drivers"].verified_by == "recipe sha512"
    assert by["answer"].sha256 == sha(b"<xml/>") and by["answer"].url.startswith("file:///")
    assert by["answer"].path == store.download_path(sha(b"<xml/>"))
    assert by["installer.kernel"].path.read_bytes() == arc.kernel
    assert by["installer.initrd"].source == "installer"
    assert set(by["installer.kernel"].as_data()) == {"url", "sha256", "size", "verified_by"}


def test_installer_defaults_to_recipe_arch_and_build_mirror(serve_archive, signer, store, fast):
    mirror, arc = serve_archive(images=True, arch="i386")
    r = recipe([src("inst", debian_installer={"release": "bookworm"})], arch="i686", mirror=mirror)
    files = fetch_sources(store, r, options=fast, keyrings=[signer.keyring])
    assert files[0].path.read_bytes() == arc.kernel
    assert "/installer-i386/" in files[0].url


def test_local_file_with_wrong_digest(tmp_path, store):
    (tmp_path / "f.bin").write_bytes(b"abc")
    r = recipe([src("f", path=str(tmp_path / "f.bin"), sha256="0" * 64)], path=tmp_path / "r.toml")
    with pytest.raises(ChecksumError):
        fetch_sources(store, r)
    assert not (store.root / "downloads" / "sha256").exists() or \
        list((store.root / "downloads" / "sha256").iterdir()) == []
    assert list(store.download_tmpdir().iterdir()) == []


def test_missing_local_file(tmp_path, store):
    r = recipe([src("f", path="nope.bin")], path=tmp_path / "r.toml")
    with pytest.raises(FetchError) as ei:
        fetch_sources(store, r)
    assert str(tmp_path / "nope.bin") in ei.value.message


def test_offline_url_miss_names_url(store):
    r = recipe([src("f", url="http://127.0.0.1:9/x.iso", sha256="5" * 64)])
    with pytest.raises(FetchError) as ei:
        fetch_sources(store, r, offline=True)
    assert "http://127.0.0.1:9/x.iso" in ei.value.hint


def test_no_sources(store):
    assert fetch_sources(store, recipe([])) == []


def test_local_file_outside_the_recipe_folder_is_refused(tmp_path, store):
    rdir, outside = tmp_path / "recipes", tmp_path / "host"
    rdir.mkdir()
    outside.mkdir()
    (outside / "f.bin").write_bytes(b"host bytes")
    (rdir / "link.bin").symlink_to(outside / "f.bin")
    spellings = (str(outside / "f.bin"), "../host/f.bin", "link.bin")
    for given in spellings:
        r = recipe([src("f", path=given)], path=rdir / "r.toml")
        with pytest.raises(UsageError) as ei:
            fetch_sources(store, r)
        assert ei.value.exit_code == 2
        assert str(outside / "f.bin") in ei.value.message and str(rdir / "r.toml") in ei.value.message
        assert "--allow-host-path" in ei.value.hint
    assert not store.download_path(sha(b"host bytes")).exists()     # refused before any read
    for given in spellings:
        allowed = dataclasses.replace(recipe([src("f", path=given)], path=rdir / "r.toml"),
                                      host_paths=(outside,))
        assert fetch_sources(store, allowed)[0].sha256 == sha(b"host bytes")
