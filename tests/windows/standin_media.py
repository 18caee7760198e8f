"""STAND-IN Windows installer media for tests: no Microsoft media exist on these machines.

A real WIM made by wimlib's `wimcapture` from a tiny directory, with the image properties a
Microsoft install.wim carries (name, EDITIONID, WINDOWS/ARCH, VERSION, INSTALLATIONTYPE,
LANGUAGES), inside a UDF 2.60 ISO made with pycdlib at sources/install.wim, as on Microsoft's
UDF bridge media. It holds no Windows: it only lets the media reader prove what it reads.
"""

from __future__ import annotations

import io
from pathlib import Path

from builder.host import proc

ARCH_CODE = {"x86": 0, "amd64": 9, "arm64": 12}

# name, edition id, arch, build, installation type
WIN10 = [("Windows 10 Home", "Core", "amd64", 19045, "Client"),
         ("Windows 10 Pro", "Professional", "amd64", 19045, "Client")]
WIN10_X86 = [("Windows 10 Pro", "Professional", "x86", 19045, "Client")]
WIN11 = [("Windows 11 Pro", "Professional", "amd64", 22631, "Client")]
SERVER2022 = [("Windows Server 2022 Standard Evaluation", "ServerStandardEval", "amd64", 20348, "Server Core"),
              ("Windows Server 2022 Standard Evaluation (Desktop Experience)", "ServerStandardEval",
               "amd64", 20348, "Server")]


def make_wim(dst: Path, editions, tmp: Path) -> Path:
    """A real (tiny) WIM with one image per edition, made by wimcapture/wimappend."""
    tree = tmp / "standin-tree"
    (tree / "Windows" / "System32").mkdir(parents=True, exist_ok=True)
    (tree / "Windows" / "System32" / "STAND-IN.txt").write_text("stand-in, not Windows\n")
    for i, (name, edition_id, arch, build, itype) in enumerate(editions):
        props = {"WINDOWS/ARCH": ARCH_CODE[arch], "WINDOWS/VERSION/MAJOR": 10, "WINDOWS/VERSION/MINOR": 0,
                 "WINDOWS/VERSION/BUILD": build, "WINDOWS/EDITIONID": edition_id,
                 "WINDOWS/INSTALLATIONTYPE": itype, "WINDOWS/LANGUAGES/LANGUAGE": "en-US",
                 "WINDOWS/LANGUAGES/DEFAULT": "en-US", "FLAGS": edition_id}
        cmd = ["wimcapture" if i == 0 else "wimappend", str(tree), str(dst), name, name]
        for k, v in props.items():
            cmd += ["--image-property", f"{k}={v}"]
        proc.run(cmd, what="wimcapture (stand-in media)", timeout=120)
    return dst


def make_iso(dst: Path, wim: Path, wim_name: str = "install.wim") -> Path:
    """A UDF 2.60 ISO holding sources/<wim_name> (plus an ISO 9660 README, like Microsoft's)."""
    import pycdlib
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="STANDIN_WIN", udf="2.60")
    readme = b"STAND-IN installer media for ironforge tests; not Windows.\r\n"
    iso.add_fp(io.BytesIO(readme), len(readme), "/README.TXT;1", udf_path="/README.TXT")
    iso.add_directory("/SOURCES", udf_path="/sources")
    data = wim.read_bytes()
    iso.add_fp(io.BytesIO(data), len(data), "/SOURCES/INSTALL.WIM;1", udf_path=f"/sources/{wim_name}")
    iso.write(str(dst))
    iso.close()
    return dst


def make_media(dst: Path, editions, tmp: Path, wim_name: str = "install.wim") -> Path:
    wim = make_wim(tmp / f"{dst.stem}.wim", editions, tmp)
    return make_iso(dst, wim, wim_name)
