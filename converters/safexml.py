"""XML from an input: size-capped, no DTD, no entities (defusedxml), namespaces stripped.

Lookups go by local name over the parsed tree; no XPath is ever built from input text.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

from converters.refuse import refuse

MAX_XML = 4 << 20


def parse(path: Path, what: str, max_bytes: int = MAX_XML) -> Element:
    try:
        import defusedxml.ElementTree as det
        from defusedxml import DefusedXmlException
    except ImportError:  # pragma: no cover - a make setup package
        from builder.errors import MissingEnvironment
        raise MissingEnvironment("Python module defusedxml is missing",
                                 hint="apt-get install python3-defusedxml (make setup)") from None
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        refuse(path, f"{what} is larger than {max_bytes >> 20} MiB")
    try:
        root = det.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        refuse(path, f"{what} uses a DTD or entities ({type(exc).__name__}); they are not accepted",
               hint="entity expansion can exhaust memory or read host files")
    except Exception as exc:  # ParseError
        refuse(path, f"{what} is not well-formed XML: {exc}")
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
        for k in list(el.attrib):
            if "}" in k:
                el.attrib[k.split("}", 1)[1]] = el.attrib.pop(k)
    return root


def children(el: Element, name: str) -> list[Element]:
    return [c for c in el if c.tag == name]


def child(el: Element | None, name: str) -> Element | None:
    if el is None:
        return None
    for c in el:
        if c.tag == name:
            return c
    return None


def text(el: Element | None, name: str | None = None, default: str | None = None) -> str | None:
    node = child(el, name) if name else el
    if node is None or node.text is None:
        return default
    return node.text.strip()
