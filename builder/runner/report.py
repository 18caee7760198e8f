"""Verification results for people (a table), for CI (JUnit XML) and for programs (JSON)."""

from __future__ import annotations

import json
import os
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from builder.runner.verify import VerifyResult

_COLUMNS = ("IMAGE", "ARCH", "ACCEL", "BOOT", "CHECKS", "VERDICT")


def _checks_cell(r: VerifyResult) -> str:
    if not r.checks:
        return "-"
    return " ".join(f"{c.name}:{'ok' if c.ok else 'FAIL'}" for c in r.checks)


def _verdict(r: VerifyResult) -> str:
    return "PASS" if r.ok else f"{r.status.upper()} ({r.reason})"


def render_table(results: list[VerifyResult]) -> str:
    rows = [_COLUMNS] + [
        (r.name, r.arch or "?", r.accel.upper(), f"{r.boot_seconds:.1f}s" if r.boot_seconds is not None else "-",
         _checks_cell(r), _verdict(r)) for r in results]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    passed = sum(r.ok for r in results)
    lines.append(f"{passed}/{len(results)} passed")
    for r in results:
        if not r.ok:
            lines.append(f"{r.name}: {r.message}" + (f"\n  hint: {r.hint}" if r.hint else ""))
    return "\n".join(lines)


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """Guest text XML 1.0 can carry (a serial line may hold any byte): the rest become U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def junit_xml(results: list[VerifyResult], suite: str = "ironforge-verify") -> str:
    failures = sum(r.status == "failed" for r in results)
    errors = sum(r.status == "error" for r in results)
    total_time = sum((r.total_seconds or r.boot_seconds or 0.0) for r in results)
    ts = ET.Element("testsuite", name=suite, tests=str(len(results)), failures=str(failures),
                    errors=str(errors), skipped=str(sum(r.status == "skipped" for r in results)),
                    time=f"{total_time:.3f}")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{r.arch or 'unknown'}", name=r.name,
                           time=f"{(r.total_seconds or r.boot_seconds or 0.0):.3f}")
        props = ET.SubElement(tc, "properties")
        for k in ("image", "image_sha256", "arch", "accel", "firmware", "boot_seconds", "guest_uptime",
                  "serial_log", "screenshot"):
            v = getattr(r, k)
            if v is not None and v != "":
                ET.SubElement(props, "property", name=k, value=str(v))
        for stage, key in sorted(r.cache_keys.items()):
            ET.SubElement(props, "property", name=f"cache_key.{stage}", value=key)
        for phase, seconds in r.timeline.items():
            if seconds is not None:
                ET.SubElement(props, "property", name=f"timeline.{phase}", value=f"{seconds:.3f}")
        if r.qemu_command:
            # one shell-quoted line: pasted into a shell it boots the same machine
            ET.SubElement(props, "property", name="qemu_command", value=shlex.join(r.qemu_command))
        if r.status == "skipped":   # a build with --no-verify
            ET.SubElement(tc, "skipped", message=_xml_text(r.message))
        if r.status == "failed" or r.status == "error":
            el = ET.SubElement(tc, "failure" if r.status == "failed" else "error", type=r.reason,
                               message=_xml_text(r.message))
            body = [r.message]
            if r.hint:
                body.append(f"hint: {r.hint}")
            body += [f"{c.name}: {'ok' if c.ok else 'FAIL'} - {c.detail}" for c in r.checks]
            if r.serial_tail:
                body += ["", "last serial lines:", *r.serial_tail]
            el.text = _xml_text("\n".join(body))
        out = [f"{c.name}: {'ok' if c.ok else 'FAIL'} - {c.detail}" for c in r.checks]
        if r.serial_tail:
            out += ["", "last serial lines:", *r.serial_tail]
        if out:
            ET.SubElement(tc, "system-out").text = _xml_text("\n".join(out).strip("\n"))
    ET.indent(ts)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(ts, encoding="unicode") + "\n"


def write_junit(results: list[VerifyResult], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(junit_xml(results))
    tmp.replace(path)
    return path


def to_json(results: list[VerifyResult]) -> str:
    return json.dumps({"passed": sum(r.ok for r in results), "total": len(results),
                       "results": [r.to_dict() for r in results]}, indent=2)
