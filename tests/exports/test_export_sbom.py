"""builder.exports.sbom and sums: the SPDX 2.3 document passes spdx-tools' full validation and lists
exactly the packages it was given; SHA256SUMS passes `sha256sum -c`."""

from __future__ import annotations

import json
import subprocess

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from builder.exports import sbom

PACKAGES = [{"name": "libc6", "version": "2.36-9+deb12u4", "arch": "amd64"},
            {"name": "busybox", "version": "1:1.35.0-4+b3", "arch": "amd64"},
            {"name": "g++-12", "version": "12.2.0-14", "arch": "amd64"}]


def spdx_problems(path) -> list[str]:
    return [m.validation_message for m in validate_full_spdx_document(parse_file(str(path)), "SPDX-2.3")]


@pytest.mark.parametrize("family,packages", [("debian", PACKAGES), ("windows", []), ("debian", [])])
def test_document_is_valid_spdx_2_3(tmp_path, family, packages):
    doc = sbom.document("img", packages, family=family, image_sha256="ab" * 32)
    path = tmp_path / "sbom.spdx.json"
    path.write_text(json.dumps(doc))
    assert spdx_problems(path) == []
    parsed = parse_file(str(path))
    listed = sorted((p.name, p.version) for p in parsed.packages if p.spdx_id != "SPDXRef-Image")
    assert listed == sorted((p["name"], p["version"]) for p in packages)
    if family == "windows":
        assert "not read offline" in doc["comment"]


def test_validation_is_real(tmp_path):
    doc = sbom.document("img", PACKAGES, family="debian")
    doc["packages"][1]["SPDXID"] = "not an id"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    assert spdx_problems(path)


def test_packages_txt_round_trip():
    text = "".join(f"{p['name']}\t{p['version']}\t{p['arch']}\n" for p in PACKAGES) + "../evil\tx\ty\n"
    assert sbom.parse_packages_txt(text) == PACKAGES


def test_export_writes_sbom_and_checkable_sums(exported):
    assert spdx_problems(exported.dir / "sbom.spdx.json") == []
    res = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=exported.dir, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    summed = {line.split(": ")[0] for line in res.stdout.splitlines()}
    assert summed == {p.name for p in exported.dir.iterdir()} - {"SHA256SUMS"}
