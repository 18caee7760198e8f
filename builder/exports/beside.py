"""What goes beside every set of exported files: the libvirt domain XML (it names the disk's final
path, so it is written where the files are placed), an SPDX SBOM and SHA256SUMS (last: it sums
everything else)."""

from __future__ import annotations

import json
from pathlib import Path

from builder.exports import libvirt_xml, sbom, sums
from builder.exports.machine import Machine

SBOM_NAME = "sbom.spdx.json"


def write(tmp: Path, final: Path, name: str, machine: Machine, formats: list[str], packages: list[dict],
          *, qcow2_file: str | None, image_sha256: str | None, known: dict[str, str] | None = None) -> None:
    """Files in ``tmp`` (the private work dir) that will be renamed to ``final``."""
    if "libvirt" in formats:
        if qcow2_file is None:
            raise ValueError("the libvirt domain XML needs the qcow2 disk beside it")
        xml = libvirt_xml.domain(machine, final.resolve() / qcow2_file, "qcow2")
        (tmp / f"{name}.xml").write_text(xml)
    doc = sbom.document(name, packages, family=machine.family, image_sha256=image_sha256)
    (tmp / SBOM_NAME).write_text(json.dumps(doc, indent=2) + "\n")
    sums.write(tmp, known)
