"""What a Windows installer ISO holds: the editions in its sources/install.wim (or .esd).

Detect, don't trust: the answer file selects the image, and the recipe's claims (version, arch,
edition) are checked against these facts. Microsoft ISOs are UDF bridge media whose ISO 9660
side holds only README.TXT, so the WIM is read through pycdlib's UDF reader. Only the 208-byte
WIM header and the XML resource it points at are read (a few KB of a multi-GB file).

The media are untrusted input: the XML resource is size-capped, parsed with defusedxml (no DTD,
no entities), and every offset is checked against the file. When the XML resource is not plain
(compressed, as ESD files may be), `wiminfo` from wimtools reads it from a sparse excerpt holding
just the header and that resource, never the whole file.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from builder import arch as archmod
from builder.errors import IronforgeError, MissingEnvironment, ToolFailed

WIM_MAGIC = b"MSWIM\0\0\0"
HEADER_SIZE = 208
XML_CAP = 16 << 20            # real install.wim XML is tens of KB; an ESD with 11 editions ~100 KB
_RESHDR_COMPRESSED = 0x04
_RESHDR_SPANNED = 0x08
WIM_NAMES = ("install.wim", "install.esd")

# WINDOWS/ARCH in the WIM XML (PROCESSOR_ARCHITECTURE_* values)
_ARCH_CODES = {0: archmod.I686, 9: archmod.X86_64, 12: "arm64", 5: "arm"}


class MediaError(IronforgeError):
    """Installer media that cannot be read or do not hold what a Windows build needs (exit 2:
    the user named the wrong file)."""

    exit_code = 2


@dataclass(frozen=True)
class Edition:
    index: int                          # 1-based, as /IMAGE/INDEX in an answer file
    name: str                           # /IMAGE/NAME, e.g. "Windows 10 Pro"
    edition_id: str | None              # EDITIONID, e.g. "Professional", "ServerStandard"
    arch: str | None                    # internal word: x86_64, i686 (or arm64/arm, never built)
    major: int | None
    minor: int | None
    build: int | None
    installation_type: str | None       # "Client", "Server", "Server Core"
    languages: tuple[str, ...] = ()
    default_language: str | None = None
    description: str | None = None

    @property
    def server(self) -> bool:
        return (self.installation_type or "").lower().startswith("server") or \
            "server" in (self.edition_id or "").lower()

    def label(self) -> str:
        arch = archmod.family_word("windows", self.arch) if self.arch in (archmod.X86_64, archmod.I686) \
            else (self.arch or "?")
        return f"{self.index}: {self.name!r} ({self.edition_id or '?'}, {arch}, build {self.build or '?'})"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["languages"] = list(self.languages)
        return d


@dataclass(frozen=True)
class MediaFacts:
    wim: str                            # path of the WIM inside the ISO ("sources/install.wim")
    read_by: str                        # "pycdlib" or "wiminfo"
    editions: tuple[Edition, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"wim": self.wim, "read_by": self.read_by, "editions": [e.to_dict() for e in self.editions]}

    @classmethod
    def from_dict(cls, d: dict) -> "MediaFacts":
        eds = tuple(Edition(**{**e, "languages": tuple(e.get("languages") or ())}) for e in d["editions"])
        return cls(d["wim"], d["read_by"], eds)

    def select(self, wanted: str | int | None) -> Edition:
        """The edition a recipe asks for (name, case-insensitive, or 1-based index); None picks
        the only one. Anything else is refused listing what the media hold."""
        have = "; ".join(e.label() for e in self.editions)
        if wanted is None:
            if len(self.editions) == 1:
                return self.editions[0]
            raise MediaError(f"the media hold {len(self.editions)} editions and the recipe names none",
                             hint=f"set windows.edition to a name or index: {have}")
        for e in self.editions:
            if (isinstance(wanted, int) and e.index == wanted) or \
                    (isinstance(wanted, str) and e.name.casefold() == wanted.strip().casefold()):
                return e
        raise MediaError(f"windows.edition {wanted!r} is not on the media",
                         hint=f"the media hold: {have}")


# -- the WIM header and its XML ---------------------------------------------------------------

@dataclass(frozen=True)
class Resource:
    size_in_wim: int
    flags: int
    offset: int
    original_size: int


@dataclass(frozen=True)
class WimHeader:
    version: int
    flags: int
    image_count: int
    xml: Resource


def _reshdr(b: bytes, at: int) -> Resource:
    raw = b[at:at + 24]
    size = int.from_bytes(raw[:7], "little")
    offset, orig = struct.unpack_from("<QQ", raw, 8)
    return Resource(size, raw[7], offset, orig)


def parse_header(b: bytes, file_size: int, what: str = "WIM") -> WimHeader:
    if len(b) < HEADER_SIZE or b[:8] != WIM_MAGIC:
        raise MediaError(f"{what}: not a WIM file (no MSWIM header)",
                         hint="the installer ISO's sources/install.wim is damaged or not a WIM")
    hsize, version, flags = struct.unpack_from("<III", b, 8)
    if hsize < HEADER_SIZE:
        raise MediaError(f"{what}: WIM header size {hsize} is too small")
    image_count = struct.unpack_from("<I", b, 0x2C)[0]
    xml = _reshdr(b, 0x48)
    if xml.size_in_wim == 0 or xml.offset < HEADER_SIZE or xml.offset + xml.size_in_wim > file_size:
        raise MediaError(f"{what}: the WIM's XML resource (offset {xml.offset}, {xml.size_in_wim} bytes) "
                         f"lies outside the file ({file_size} bytes)",
                         hint="the WIM is truncated or damaged; check the ISO's sha256")
    if xml.size_in_wim > XML_CAP or xml.original_size > XML_CAP:
        raise MediaError(f"{what}: the WIM's XML resource is {max(xml.size_in_wim, xml.original_size)} "
                         f"bytes, over the {XML_CAP >> 20} MiB this reader accepts")
    return WimHeader(version, flags, image_count, xml)


def _int(el, path: str) -> int | None:
    t = el.findtext(path)
    try:
        return int(t.strip(), 0) if t is not None else None
    except ValueError:
        return None


def _text(el, path: str) -> str | None:
    t = el.findtext(path)
    return t.strip() if t is not None and t.strip() else None


def parse_xml(data: bytes, what: str = "WIM") -> tuple[Edition, ...]:
    """Editions from the WIM's XML resource (UTF-16LE, usually with a BOM)."""
    from builder.host.tools import require_python_module
    require_python_module("defusedxml", "python3-defusedxml")      # missing: exit 3, not a traceback
    from defusedxml import ElementTree as SafeET
    from defusedxml.common import DefusedXmlException

    if len(data) > XML_CAP:
        raise MediaError(f"{what}: WIM XML of {len(data)} bytes is over the {XML_CAP >> 20} MiB cap")
    try:
        text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("utf-16-le")
    except UnicodeDecodeError:
        raise MediaError(f"{what}: the WIM's XML resource is not UTF-16 text") from None
    try:
        root = SafeET.fromstring(text.lstrip("\ufeff"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MediaError(f"{what}: the WIM's XML carries a DTD or entities ({type(exc).__name__}); refused",
                         hint="a real install.wim has plain XML: these media are not Microsoft's") from None
    except Exception as exc:  # noqa: BLE001 - ParseError and friends: all mean the same to a user
        raise MediaError(f"{what}: the WIM's XML does not parse: {exc}") from None
    if root.tag != "WIM":
        raise MediaError(f"{what}: the WIM's XML root is <{root.tag}>, not <WIM>")
    editions = []
    for img in root.findall("IMAGE"):
        try:
            index = int(img.get("INDEX", ""))
        except ValueError:
            raise MediaError(f"{what}: an IMAGE without a numeric INDEX") from None
        code = _int(img, "WINDOWS/ARCH")
        langs = tuple(t.text.strip() for t in img.findall("WINDOWS/LANGUAGES/LANGUAGE") if t.text)
        editions.append(Edition(
            index=index, name=_text(img, "NAME") or _text(img, "DISPLAYNAME") or f"image {index}",
            edition_id=_text(img, "WINDOWS/EDITIONID") or _text(img, "FLAGS"),
            arch=_ARCH_CODES.get(code, f"unknown({code})") if code is not None else None,
            major=_int(img, "WINDOWS/VERSION/MAJOR"), minor=_int(img, "WINDOWS/VERSION/MINOR"),
            build=_int(img, "WINDOWS/VERSION/BUILD"),
            installation_type=_text(img, "WINDOWS/INSTALLATIONTYPE"),
            languages=langs, default_language=_text(img, "WINDOWS/LANGUAGES/DEFAULT"),
            description=_text(img, "DESCRIPTION")))
    if not editions:
        raise MediaError(f"{what}: the WIM's XML lists no images")
    return tuple(sorted(editions, key=lambda e: e.index))


def _read_exact(fp: BinaryIO, offset: int, n: int) -> bytes:
    fp.seek(offset)
    out = fp.read(n)
    if len(out) != n:
        raise MediaError(f"WIM: short read at offset {offset} ({len(out)} of {n} bytes)",
                         hint="the WIM is truncated; check the ISO's sha256")
    return out


def read_header_and_xml(fp: BinaryIO, size: int, what: str = "WIM") -> tuple[WimHeader, bytes, bytes]:
    """The header (parsed and raw) and the raw XML resource of an open WIM: two bounded reads."""
    head = _read_exact(fp, 0, HEADER_SIZE) if size >= HEADER_SIZE else fp.read(size)
    hdr = parse_header(head, size, what)
    return hdr, head, _read_exact(fp, hdr.xml.offset, hdr.xml.size_in_wim)


def _plain(hdr: WimHeader) -> bool:
    return not hdr.xml.flags & (_RESHDR_COMPRESSED | _RESHDR_SPANNED)


# -- wiminfo fallback ---------------------------------------------------------------------------

def wiminfo_xml(wim: Path, timeout: float = 120) -> bytes:
    """`wiminfo --xml` of a WIM file: the decoded XML resource, UTF-16LE."""
    from builder.host import proc, tools
    exe = tools.which("wiminfo")
    if exe is None:
        raise MissingEnvironment("the WIM's XML is compressed and `wiminfo` is not installed to read it",
                                 hint="install it: apt-get install wimtools  (or run: make setup)")
    res = proc.run([exe, "--xml", str(wim)], what="wiminfo --xml", timeout=timeout, text=False,
                   limits=proc.Limits(cpu_seconds=120, address_space=2 << 30, file_size=0))
    return res.stdout


def inspect_wim_file(wim: Path, reader: str = "auto") -> MediaFacts:
    """Facts from a WIM file on disk. ``reader``: auto (our parser; wiminfo when the XML is
    compressed), pycdlib (our parser only), wiminfo (always the tool)."""
    size = wim.stat().st_size
    with open(wim, "rb") as fp:
        hdr, _head, raw = read_header_and_xml(fp, size, wim.name)   # refuses non-WIMs first
    if reader != "wiminfo" and _plain(hdr):
        return MediaFacts(wim.name, "pycdlib", parse_xml(raw, wim.name))
    if reader == "pycdlib":
        raise MediaError(f"{wim.name}: the WIM's XML resource is compressed; only wiminfo can read it")
    return _via_wiminfo(wim, wim.name)


def _via_wiminfo(wim: Path, what: str) -> MediaFacts:
    try:
        xml = wiminfo_xml(wim)
    except ToolFailed as exc:
        raise MediaError(f"{what}: wiminfo cannot read the WIM: {exc.message}",
                         hint="the WIM is damaged; check the ISO's sha256") from None
    return MediaFacts(what, "wiminfo", parse_xml(xml, what))


def _sparse_excerpt(dst: Path, size: int, head: bytes, hdr: WimHeader, raw: bytes) -> None:
    """A file as long as the WIM holding only its header and XML resource: what wiminfo --xml
    reads, without copying gigabytes out of the ISO."""
    with open(dst, "wb") as f:
        f.truncate(size)
        f.write(head)
        f.seek(hdr.xml.offset)
        f.write(raw)


# -- the ISO -------------------------------------------------------------------------------------

def _udf_name(rec) -> str:
    ident = rec.file_identifier()
    return ident.decode("utf-8", "replace") if isinstance(ident, bytes) else str(ident)


def _find_wim(iso) -> str | None:
    """UDF path of sources/install.{wim,esd}, matched case-insensitively (names vary in case)."""
    def child(path: str, name: str) -> str | None:
        for rec in iso.list_children(udf_path=path):
            if rec is None:
                continue
            n = _udf_name(rec)
            if n not in (".", "..") and n.lower() == name:
                return path.rstrip("/") + "/" + n
        return None
    sources = child("/", "sources")
    if sources is None:
        return None
    for name in WIM_NAMES:
        found = child(sources, name)
        if found:
            return found
    return None


def inspect_iso(iso_path: Path, reader: str = "auto") -> MediaFacts:
    """The editions on an installer ISO. ``reader``: auto (our parser, wiminfo when the XML is
    compressed), pycdlib (our parser only), wiminfo (always the tool, on a sparse excerpt)."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    what = str(iso_path)
    # pycdlib reports most damage as PyCdlibException, but a truncated or crafted image can also
    # surface as struct.error, ValueError, IndexError… from its parsers: all mean "unreadable".
    broken = (PyCdlibException, struct.error, ValueError, IndexError, KeyError, EOFError)
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(iso_path))
    except broken as exc:
        raise MediaError(f"{what}: not a readable ISO image ({exc})",
                         hint="windows.media must name a Windows installer ISO") from None
    except OSError as exc:
        raise MediaError(f"{what}: cannot read: {exc.strerror or exc}") from None
    try:
        if not iso.has_udf():
            raise MediaError(f"{what}: the ISO has no UDF file system, so it is not Windows installer media",
                             hint="Windows 7 and later ship as UDF ISOs with sources/install.wim")
        try:
            wim_path = _find_wim(iso)
        except broken as exc:
            raise MediaError(f"{what}: cannot list the ISO's UDF tree ({exc})") from None
        if wim_path is None:
            raise MediaError(f"{what}: no sources/install.wim or sources/install.esd on the ISO",
                             hint="this is not Windows installer media (or a boot-only ISO)")
        rel = wim_path.lstrip("/")
        size = iso.get_record(udf_path=wim_path).get_data_length()
        with iso.open_file_from_iso(udf_path=wim_path) as fp:
            hdr, head, raw = read_header_and_xml(fp, size, rel)
    except broken as exc:
        raise MediaError(f"{what}: reading the WIM through UDF failed ({exc})",
                         hint="set windows.media to a different ISO, or report this ISO's layout") from None
    finally:
        iso.close()
    if reader != "wiminfo" and _plain(hdr):
        return MediaFacts(rel, "pycdlib", parse_xml(raw, rel))
    if reader == "pycdlib":
        raise MediaError(f"{rel}: the WIM's XML resource is compressed; only wiminfo can read it")
    with tempfile.TemporaryDirectory(prefix="ironforge-wim-") as tmp:
        excerpt = Path(tmp) / os.path.basename(rel)
        _sparse_excerpt(excerpt, size, head, hdr, raw)
        facts = _via_wiminfo(excerpt, rel)
    return MediaFacts(rel, "wiminfo", facts.editions)


def check_edition_fits(edition: Edition, *, arch: str, server: bool, release: str) -> None:
    """The recipe's claims against the image it selects: arch and client/server must agree."""
    if edition.arch != arch:
        have = archmod.family_word("windows", edition.arch) if edition.arch in (archmod.X86_64, archmod.I686) \
            else edition.arch or "of no stated arch"
        raise MediaError(f"edition {edition.label()} is {have}, but the recipe's arch is "
                         f"{archmod.family_word('windows', arch)}",
                         hint="use media for the recipe's arch, or a recipe for the media's")
    if edition.server != server:
        raise MediaError(f"edition {edition.label()} is a {'server' if edition.server else 'client'} "
                         f"edition, but the recipe's os.release is {release!r}",
                         hint="the media do not match the recipe's Windows version")

