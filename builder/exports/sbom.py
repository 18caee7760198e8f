"""An SPDX 2.3 JSON SBOM of the guest's packages.

Debian: the package list the build reads back from the finished image (dpkg's database, via the
drivers stage) — name, version, architecture, as ``pkg:deb`` purls. Windows: nothing is read
offline yet (the installed programs live in the SOFTWARE hive's Uninstall keys and the component
store, which ironforge does not read back), and the SBOM says so in its comment instead of
pretending to be complete. An image given to ``ironforge export`` has no package list unless one
came with it (a published ``packages.txt``).
"""

from __future__ import annotations

import datetime
import re
import uuid

from builder import __version__

NAMESPACE = "https://ironforge.invalid/spdx"


def _id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]", "-", text)


def document(name: str, packages: list[dict], *, family: str, image_sha256: str | None = None,
             created: datetime.datetime | None = None) -> dict:
    created = created or datetime.datetime.now(datetime.timezone.utc)
    if family == "windows":
        comment = ("Windows guest: its installed programs and components are not read offline by "
                   "ironforge (no SOFTWARE-hive or component-store inventory); this SBOM lists the image only.")
    elif packages:
        comment = f"{len(packages)} Debian packages, read from the image's dpkg database after the build."
    else:
        comment = "No package list was available for this image; this SBOM lists the image only."
    image = {"name": name, "SPDXID": "SPDXRef-Image", "downloadLocation": "NOASSERTION",
             "filesAnalyzed": False, "primaryPackagePurpose": "OPERATING-SYSTEM",
             "copyrightText": "NOASSERTION", "licenseConcluded": "NOASSERTION",
             "licenseDeclared": "NOASSERTION"}
    if image_sha256:
        image["checksums"] = [{"algorithm": "SHA256", "checksumValue": image_sha256}]
    pkgs, rels = [image], [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                            "relatedSpdxElement": "SPDXRef-Image"}]
    seen: set[str] = set()
    for p in packages:
        pname, version, arch = p["name"], p.get("version") or "", p.get("arch") or ""
        sid = "SPDXRef-Package-" + _id(f"{pname}-{arch}")
        if sid in seen:
            continue
        seen.add(sid)
        entry = {"name": pname, "SPDXID": sid, "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
                 "copyrightText": "NOASSERTION", "licenseConcluded": "NOASSERTION",
                 "licenseDeclared": "NOASSERTION", "supplier": "Organization: Debian"}
        if version:
            entry["versionInfo"] = version
            purl = f"pkg:deb/debian/{pname}@{version}" + (f"?arch={arch}" if arch else "")
            entry["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                      "referenceLocator": purl}]
        pkgs.append(entry)
        rels.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                     "relatedSpdxElement": sid})
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name} guest packages",
        "documentNamespace": f"{NAMESPACE}/{_id(name)}-{uuid.uuid4()}",
        "creationInfo": {"created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "creators": [f"Tool: ironforge-{__version__}"]},
        "comment": comment,
        "documentDescribes": ["SPDXRef-Image"],
        "packages": pkgs,
        "relationships": rels,
    }


def parse_packages_txt(text: str, limit: int = 100_000) -> list[dict]:
    """packages.txt as publish writes it (name TAB version TAB arch), bounded."""
    out = []
    for line in text.splitlines()[:limit]:
        parts = line.split("\t")
        if parts and re.fullmatch(r"[a-z0-9][a-z0-9+.\-]*", parts[0]):
            out.append({"name": parts[0], "version": parts[1] if len(parts) > 1 else "",
                        "arch": parts[2] if len(parts) > 2 else ""})
    return out
