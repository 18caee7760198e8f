"""Digest and cache keys of a published image, from the manifest.json beside it."""

from __future__ import annotations

import json

from builder.runner.provenance import beside


def test_manifest_beside_the_image(tmp_path):
    (tmp_path / "web.qcow2").write_bytes(b"x")
    (tmp_path / "manifest.json").write_text(json.dumps({
        "image": {"qcow2": {"file": "web.qcow2", "sha256": "ab" * 32}, "vmdk": {"file": "web.vmdk", "sha256": "cd" * 32}},
        "stages": [{"name": "bootstrap", "key": "k1"}, {"name": "export", "key": "k2"}]}))
    assert beside(tmp_path / "web.qcow2") == {"image_sha256": "ab" * 32,
                                              "cache_keys": {"bootstrap": "k1", "export": "k2"}}
    assert beside(tmp_path / "web.vmdk")["image_sha256"] == "cd" * 32


def test_no_claim_without_a_manifest_that_lists_the_image(tmp_path):
    (tmp_path / "other.qcow2").write_bytes(b"x")
    assert beside(tmp_path / "other.qcow2") == {}                       # no manifest
    (tmp_path / "manifest.json").write_text(json.dumps({"image": {"qcow2": {"file": "web.qcow2"}}}))
    assert beside(tmp_path / "other.qcow2") == {}                       # lists another image
    (tmp_path / "manifest.json").write_text("[1, 2")
    assert beside(tmp_path / "other.qcow2") == {}                       # not JSON
    (tmp_path / "manifest.json").write_text(json.dumps({"image": [1], "stages": "x"}))
    assert beside(tmp_path / "other.qcow2") == {}                       # not our shape
