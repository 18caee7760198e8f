"""A Windows recipe's inputs: tree digests of virtio-win directories, pins, the TPM route."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder import recipe as recipes
from builder.windows import inputs

REPO = Path(__file__).resolve().parents[2]


def test_tree_digest_follows_content_and_names_not_times(tmp_path):
    root = tmp_path / "vw"
    (root / "viostor" / "w10" / "x86").mkdir(parents=True)
    f = root / "viostor" / "w10" / "x86" / "viostor.sys"
    f.write_bytes(b"one")
    d1 = inputs.tree_digest(root)
    os.utime(f, (1, 1))
    assert inputs.tree_digest(root) == d1
    f.write_bytes(b"two")
    d2 = inputs.tree_digest(root)
    assert d2 != d1
    f.rename(f.with_name("vioscsi.sys"))
    assert inputs.tree_digest(root) not in (d1, d2)
    (root / "outside").symlink_to("/etc/passwd")         # links are not followed out of the tree
    assert inputs.tree_digest(root) == inputs.tree_digest(root)
    assert "passwd" not in str(inputs.tree_digest(root))


def _load(tmp_path, base, extra=""):
    p = tmp_path / "r.toml"
    p.write_text(f'extends = "{base}"\n{extra}')
    return recipes.load(str(p), REPO / "recipes")


def test_pins(tmp_path):
    iso = tmp_path / "m.iso"
    iso.write_bytes(b"stand-in iso")
    r = _load(tmp_path, "windows-10-amd64", f'[windows.media]\npath = "{iso}"\n[windows.virtio_win]\n'
                                            f'url = "https://example.org/v.iso"\nsha256 = "{"AB" * 32}"\n')
    media, vw = inputs.require(r)
    import hashlib
    assert inputs.pin(media) == {"sha256": hashlib.sha256(b"stand-in iso").hexdigest()}
    assert inputs.pin(vw) == {"sha256": "ab" * 32, "url": "https://example.org/v.iso"}


def test_missing_file_and_directory_as_media(tmp_path):
    r = _load(tmp_path, "windows-10-amd64", f'[windows.media]\npath = "{tmp_path}"\n[windows.virtio_win]\n'
                                            'path = "nope.iso"\n')
    from builder.errors import RecipeError
    with pytest.raises(RecipeError) as exc:
        inputs.require(r)
    got = [(p.key, p.got) for p in exc.value.problems]
    assert got == [("windows.media.path", f"{tmp_path}, a directory"),
                   ("windows.virtio_win.path", f"{tmp_path / 'nope.iso'}, which does not exist")]


def test_tpm_route(tmp_path, monkeypatch):
    assert inputs.tpm_mode(_load(tmp_path, "windows-10-amd64")) is None
    assert inputs.tpm_mode(_load(tmp_path, "windows-11-amd64", '[windows]\ntpm = "bypass"\n')) == "bypass"
    assert inputs.tpm_mode(_load(tmp_path, "windows-11-amd64", '[windows]\ntpm = "swtpm"\n')) == "swtpm"
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))                  # a host without swtpm
    assert inputs.tpm_mode(_load(tmp_path, "windows-11-amd64")) == "bypass"


def test_a_path_changed_since_it_was_keyed_is_refused(tmp_path):
    from builder.cache.store import Store
    from builder.errors import ChecksumError
    iso = tmp_path / "m.iso"
    iso.write_bytes(b"stand-in iso, as keyed")
    r = _load(tmp_path, "windows-10-amd64", f'[windows.media]\npath = "{iso}"\n[windows.virtio_win]\npath = "{iso}"\n')
    media, _vw = inputs.require(r)
    keyed = inputs.pin(media)["sha256"]
    iso.write_bytes(b"stand-in iso, changed after the plan")
    with pytest.raises(ChecksumError):
        inputs.local_file(Store(tmp_path / "cache"), media, keyed=keyed)
    path, sha = inputs.local_file(Store(tmp_path / "cache"), media)
    assert sha != keyed and path.read_bytes() == iso.read_bytes()
