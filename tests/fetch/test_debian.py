"""InRelease -> Release against a signed fake archive on a loopback server."""

from __future__ import annotations

import hashlib

import pytest

from builder.errors import ChecksumError, FetchError, SignatureError, UsageError
from builder.fetch.debian import (fetch_listed, inrelease, number_for, parse_release,
                                  parse_sha256sums, suite_for)

from fetch_support import Route


def test_release_words():
    assert suite_for("12") == suite_for("bookworm") == "bookworm"
    assert suite_for(13) == "trixie"
    assert number_for("trixie") == "13"
    with pytest.raises(UsageError):
        suite_for("11x")


def test_parse_release_and_sums():
    fields, files = parse_release("Codename: bookworm\nSHA256:\n " + "a" * 64 + " 12 main/x\n"
                                  "MD5Sum:\n " + "b" * 32 + " 12 main/y\n")
    assert fields == {"Codename": "bookworm"}
    assert files == {"main/x": ("a" * 64, 12)}
    assert parse_sha256sums("c" * 64 + "  ./netboot/mini.iso\n") == {"netboot/mini.iso": "c" * 64}


def test_inrelease_verifies_and_pins(serve_archive, signer, store, fast):
    mirror, arc = serve_archive()
    rel = inrelease(mirror, "12", store, keyrings=[signer.keyring], options=fast)
    raw = (arc.root / "dists/bookworm/InRelease").read_bytes()
    assert rel.inrelease_sha256 == hashlib.sha256(raw).hexdigest()
    assert rel.suite == "bookworm" and rel.fields["Codename"] == "bookworm"
    sha, size = rel.entry(f"main/installer-{arc.arch}/current/images/SHA256SUMS")
    sums = (arc.root / arc.images / "SHA256SUMS").read_bytes()
    assert (sha, size) == (hashlib.sha256(sums).hexdigest(), len(sums))
    # offline: the remembered copy, verified again
    assert inrelease(mirror, "bookworm", store, keyrings=[signer.keyring], offline=True) \
        .inrelease_sha256 == rel.inrelease_sha256


def test_tampered_release_is_refused(serve_archive, signer, store, fast):
    def tamper(text: str) -> str:
        i = text.index("SHA256:\n ") + len("SHA256:\n ")
        return text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:]
    mirror, _ = serve_archive(tamper_release=tamper)
    with pytest.raises(SignatureError) as ei:
        inrelease(mirror, "12", store, keyrings=[signer.keyring], options=fast)
    assert "bad signature" in ei.value.message and "InRelease" in ei.value.message


def test_wrong_key_is_refused(serve_archive, other_signer, signer, store, fast):
    mirror, _ = serve_archive(signer=other_signer)
    with pytest.raises(SignatureError) as ei:
        inrelease(mirror, "12", store, keyrings=[signer.keyring], options=fast)
    assert "unknown key" in ei.value.message


def test_real_debian_keyring_refuses_a_fake_archive(serve_archive, store, fast):
    mirror, _ = serve_archive()
    with pytest.raises(SignatureError):
        inrelease(mirror, "12", store, options=fast)


def test_release_for_another_suite_is_refused(serve_archive, signer, server, store, fast):
    mirror, arc = serve_archive()
    # the mirror answers trixie's InRelease with bookworm's (validly signed) one
    server.add(mirror.removeprefix(server.base) + "/dists/trixie/InRelease",
               Route(data=(arc.root / "dists/bookworm/InRelease").read_bytes()))
    with pytest.raises(SignatureError) as ei:
        inrelease(mirror, "trixie", store, keyrings=[signer.keyring], options=fast)
    assert "not 'trixie'" in ei.value.message


def test_missing_inrelease_is_a_404(server, signer, store, fast):
    with pytest.raises(FetchError) as ei:
        inrelease(server.base + "/no-archive", "12", store, keyrings=[signer.keyring], options=fast)
    assert "404" in ei.value.message


def test_file_not_matching_release_entry(serve_archive, signer, store, fast):
    mirror, arc = serve_archive(sums_override=b"not what Release lists\n")
    rel = inrelease(mirror, "12", store, keyrings=[signer.keyring], options=fast)
    with pytest.raises(ChecksumError):
        fetch_listed(rel, f"main/installer-{arc.arch}/current/images/SHA256SUMS", store, options=fast)


def test_unlisted_path_cannot_be_trusted(serve_archive, signer, store, fast):
    mirror, _ = serve_archive()
    rel = inrelease(mirror, "12", store, keyrings=[signer.keyring], options=fast)
    with pytest.raises(SignatureError) as ei:
        rel.entry("main/installer-arm64/current/images/SHA256SUMS")
    assert "does not list" in ei.value.message
