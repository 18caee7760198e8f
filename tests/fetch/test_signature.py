"""gpgv over clearsigned files made with a throw-away key (real gpg, real gpgv)."""

from __future__ import annotations

import pytest

from builder.errors import MissingEnvironment, SignatureError
from builder.fetch.signature import debian_keyrings, verify_clearsigned

TEXT = "Origin: Debian\nCodename: bookworm\nSHA256:\n 00 1 x\n- dashed line\n"


def test_good_signature_returns_only_the_signed_text(signer, tmp_path):
    p = tmp_path / "InRelease"
    # text outside the signed block must never come back as if it were signed
    p.write_bytes(b"Injected: before\n" + signer.clearsign(TEXT))
    assert verify_clearsigned(p, [signer.keyring], what="t") == TEXT


def test_modified_text_is_a_bad_signature(signer, tmp_path):
    p = tmp_path / "InRelease"
    p.write_bytes(signer.clearsign(TEXT).replace(b"bookworm", b"trixie"))
    with pytest.raises(SignatureError) as ei:
        verify_clearsigned(p, [signer.keyring], what="fake InRelease")
    assert "bad signature" in ei.value.message and "fake InRelease" in ei.value.message
    assert ei.value.hint


def test_unknown_key(signer, other_signer, tmp_path):
    p = tmp_path / "InRelease"
    p.write_bytes(other_signer.clearsign(TEXT))
    with pytest.raises(SignatureError) as ei:
        verify_clearsigned(p, [signer.keyring], what="t")
    assert "unknown key" in ei.value.message


def test_unsigned_file(signer, tmp_path):
    p = tmp_path / "InRelease"
    p.write_text(TEXT)
    with pytest.raises(SignatureError) as ei:
        verify_clearsigned(p, [signer.keyring], what="t")
    assert "no signature" in ei.value.message


def test_missing_keyring_is_missing_environment(signer, tmp_path):
    p = tmp_path / "InRelease"
    p.write_bytes(signer.clearsign(TEXT))
    with pytest.raises(MissingEnvironment):
        verify_clearsigned(p, [tmp_path / "nope.gpg"], what="t")


def test_debian_keyrings_include_per_release_rings_but_not_removed_keys():
    rings = debian_keyrings()
    names = [r.name for r in rings]
    assert names[0] == "debian-archive-keyring.gpg"
    assert "debian-archive-removed-keys.gpg" not in names
    assert any("bookworm" in n for n in names)


def test_no_keyrings_at_all(tmp_path):
    with pytest.raises(MissingEnvironment) as ei:
        debian_keyrings(tmp_path)
    assert "debian-archive-keyring" in ei.value.hint


def test_a_hung_gpgv_is_a_signature_error_not_an_internal_one(signer, tmp_path, monkeypatch):
    """The gpgv here is a stand-in that hangs (placed first on PATH): what is tested is our timeout."""
    import time

    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "gpgv"
    pidfile = tmp_path / "gpgv.pid"
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 300\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    p = tmp_path / "InRelease"
    p.write_bytes(signer.clearsign(TEXT))
    t0 = time.monotonic()
    with pytest.raises(SignatureError) as ei:
        verify_clearsigned(p, [signer.keyring], what="hung InRelease", timeout=1)
    assert time.monotonic() - t0 < 10
    assert "hung InRelease: gpgv: still running after 1 s" in ei.value.message
    assert ei.value.exit_code == 1 and ei.value.hint
    pid = int(pidfile.read_text())
    assert not __import__("os").path.exists(f"/proc/{pid}") or \
        open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
