"""Verification results as one static HTML page a person can open anywhere.

Self-contained: inline CSS, screenshots as data: URIs, no script, and a Content-Security-Policy
that forbids fetching anything, so the page works offline and a guest's text cannot make it
load or run something. Everything that came from a guest (serial lines, check details, marker
values, messages quoting them) is HTML-escaped; so is every name.

    write(path, results)   # results: VerifyResult objects (verify, build, rebuild)
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
from pathlib import Path

from builder.runner.ppm import encode_png, parse_ppm
from builder.runner.timeline import PHASES
from builder.runner.verify import ERROR, VerifyResult

_MAX_RESULT = 4 << 20
_MAX_SCREENSHOT = 16 << 20      # a VGA screen is far smaller; anything bigger is not embedded
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SKIPPED = "skipped"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2430;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.sub{color:#5a6372;margin-bottom:16px}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;min-width:70%}
th,td{padding:7px 12px;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
th{background:#2b3445;color:#fff;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:700;padding:2px 8px;border-radius:4px;white-space:nowrap}
.passed{background:#d8f3dc;color:#1b5e20}.failed{background:#ffd8d6;color:#8e1b10}
.error{background:#ffe7c2;color:#7a4100}.skipped{background:#e6e8ec;color:#444}
.check{display:inline-block;margin:1px 3px 1px 0;padding:0 6px;border-radius:3px;font-size:12px}
.check.ok{background:#e3f4e6;color:#1b5e20}.check.bad{background:#ffd8d6;color:#8e1b10}
.tl{display:grid;grid-template-columns:220px 1fr 90px;gap:6px 12px;align-items:center;background:#fff;
padding:12px;box-shadow:0 1px 2px #0002}
.bar{position:relative;height:22px;background:#eef0f3;border-radius:3px;overflow:hidden}
.seg{position:absolute;top:0;height:100%}
.seg.firmware{background:#8e9aaf}.seg.kernel{background:#4f7cac}.seg.userspace{background:#52a675}
.seg.wait{background:#d6dbe2}
.seg.unfinished{background:repeating-linear-gradient(45deg,#4f7cac 0 6px,#9db5d0 6px 12px)}
.tick{position:absolute;top:0;width:3px;height:100%;background:#d62828}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;
margin-right:4px;vertical-align:-1px;border-radius:2px}
.fail{background:#fff;padding:12px 16px;margin:12px 0;box-shadow:0 1px 2px #0002;border-left:4px solid #c0392b}
.fail img{max-width:100%;border:1px solid #ccd;display:block;margin:8px 0;image-rendering:pixelated}
pre{background:#11151c;color:#d7dde8;padding:10px;overflow-x:auto;font-size:12px;line-height:1.35;
white-space:pre-wrap;word-break:break-all}
.muted{color:#7b8494}
"""

_COLOURS = {"firmware": "#8e9aaf", "kernel": "#4f7cac", "userspace": "#52a675", "wait": "#d6dbe2"}
# the firmware phase runs to the kernel's start, so it holds the bootloader (GRUB) too
_LEGEND = {"firmware": "firmware + bootloader", "wait": "rest, until the verdict"}


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _anchor(i: int, r: VerifyResult) -> str:
    # ids from an index, never from a (guest- or user-chosen) name
    return f"image-{i}"


def _verdict(r: VerifyResult) -> tuple[str, str]:
    if r.status == SKIPPED:
        return SKIPPED, "SKIPPED"
    if r.ok:
        return "passed", "PASS"
    return (ERROR if r.status == ERROR else "failed"), f"{r.status.upper()} ({r.reason})"


def _seconds(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f} s"


def _checks(r: VerifyResult) -> str:
    if not r.checks:
        return '<span class="muted">–</span>'
    return "".join(f'<span class="check {"ok" if c.ok else "bad"}" title="{_e(c.detail)}">'
                   f'{_e(c.name)} {"✓" if c.ok else "✗"}</span>' for c in r.checks)


def _fleet(results: list[VerifyResult]) -> str:
    rows = []
    for i, r in enumerate(results):
        cls, text = _verdict(r)
        rows.append(
            f'<tr id="{_anchor(i, r)}"><td>{_e(r.name)}</td><td>{_e(r.arch or "?")}</td>'
            f'<td>{_e((r.accel or "?").upper())}</td><td class="num">{_seconds(r.boot_seconds)}</td>'
            f'<td>{_checks(r)}</td><td><span class="verdict {cls}" data-image="{_e(r.name)}" '
            f'data-verdict="{cls}">{_e(text)}</span></td></tr>')
    return ("<table><thead><tr><th>image</th><th>arch</th><th>accel</th><th>boot</th><th>checks</th>"
            "<th>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _timeline_row(r: VerifyResult, scale: float) -> str:
    t = r.timeline or {}
    total = r.boot_seconds or 0.0
    segs, at, parts = [], 0.0, []
    for phase in PHASES:
        v = t.get(phase)
        if v is None and phase == "kernel" and t.get("kernel_unfinished") is not None:
            v = t["kernel_unfinished"]
            segs.append(("kernel unfinished", at, v))
            parts.append(f"kernel {v:.1f} s, no userspace")
            at += v
            break
        if v is None:
            continue
        segs.append((phase, at, v))
        parts.append(f"{phase} {v:.1f} s")
        at += v
    if total > at:
        segs.append(("wait", at, total - at))   # what no phase accounts for: probe settle, detection
    bar = "".join(f'<div class="seg {p}" style="left:{100 * start / scale:.3f}%;width:{100 * length / scale:.3f}%"'
                  f' title="{_e(p)} {length:.2f} s"></div>' for p, start, length in segs if length > 0)
    marker = t.get("marker")
    if marker is not None:
        bar += (f'<div class="tick" style="left:{min(100 * marker / scale, 99.5):.3f}%" '
                f'title="marker at {marker:.2f} s"></div>')
        parts.append(f"marker at {marker:.1f} s")
    detail = ", ".join(parts) if parts else "no timestamped console lines"
    return (f'<div title="{_e(detail)}">{_e(r.name)}<br><span class="muted">{_e(detail)}</span></div>'
            f'<div class="bar">{bar}</div><div class="muted">{_seconds(total)}</div>')


def _timelines(results: list[VerifyResult]) -> str:
    shown = [r for r in results if r.boot_seconds is not None]
    if not shown:
        return '<p class="muted">No image was booted.</p>'
    scale = max(max(r.boot_seconds or 0.0, (r.timeline or {}).get("marker") or 0.0) for r in shown) or 1.0
    legend = "".join(f'<span><i style="background:{c}"></i>{_LEGEND.get(p, p)}</span>'
                     for p, c in _COLOURS.items())
    legend += '<span><i style="background:#d62828;width:3px"></i>ready marker</span>'
    return (f'<p class="legend">{legend}</p><div class="tl">'
            + "".join(_timeline_row(r, scale) for r in shown) + "</div>")


def screenshot_data_uri(path: str | Path | None) -> str | None:
    """The screenshot as a data: URI (PNG; a PPM is converted), or None if absent or not an image."""
    if not path:
        return None
    try:
        p = Path(path)
        if not p.is_file() or p.stat().st_size > _MAX_SCREENSHOT:
            return None
        data = p.read_bytes()
    except OSError:
        return None
    if data[:2] == b"P6":
        try:
            data = encode_png(*parse_ppm(data))
        except ValueError:
            return None
    if data[:8] != _PNG_MAGIC:
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _failures(results: list[VerifyResult]) -> str:
    out = []
    for i, r in enumerate(results):
        if r.ok or r.status == SKIPPED:
            continue
        cls, text = _verdict(r)
        body = [f'<h3><a href="#{_anchor(i, r)}">{_e(r.name)}</a> — <span class="verdict {cls}">{_e(text)}</span></h3>',
                f"<p>{_e(r.message)}</p>"]
        if r.hint:
            body.append(f"<p><b>hint:</b> {_e(r.hint)}</p>")
        uri = screenshot_data_uri(r.screenshot)
        if uri:
            body.append(f'<img alt="screen of {_e(r.name)} when it failed" src="{uri}">')
        if r.serial_tail:
            body.append("<p>last serial lines:</p><pre>" + _e("\n".join(r.serial_tail)) + "</pre>")
        where = [f"serial log: {r.serial_log}"] if r.serial_log else []
        if r.screenshot:
            where.append(f"screenshot: {r.screenshot}")
        if where:
            body.append(f'<p class="muted">{_e("; ".join(where))}</p>')
        out.append('<div class="fail">' + "".join(body) + "</div>")
    return "".join(out) if out else '<p class="muted">None.</p>'


def render(results: list[VerifyResult], *, title: str = "ironforge verification",
           generated: datetime.datetime | None = None) -> str:
    when = (generated or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d %H:%M:%S UTC")
    booted = [r for r in results if r.status != SKIPPED]
    passed = sum(r.ok for r in booted)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><div class=\"sub\" id=\"summary\" data-passed=\"{passed}\" "
        f"data-total=\"{len(booted)}\">{passed}/{len(booted)} passed · {_e(when)}</div>"
        f"<h2>Fleet</h2>{_fleet(results)}"
        f"<h2>Boot timeline</h2>{_timelines(results)}"
        f"<h2>Failures</h2>{_failures(results)}"
        "</body></html>\n")


def write(path: Path, results: list[VerifyResult], *, title: str = "ironforge verification") -> Path:
    """Write the page to ``path`` whole (a temporary file renamed over it): never half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(render(results, title=title), encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _from_failure(row: dict, failure) -> VerifyResult:
    """A failed verify stage keeps its evidence in one folder, the whole result as verify.json
    (builder/stages/verify.py); without it, what the error itself carries."""
    if failure.serial_log:
        saved = Path(failure.serial_log).parent / "verify.json"
        try:
            if saved.stat().st_size <= _MAX_RESULT:
                return VerifyResult.from_dict(json.loads(saved.read_text()))
        except (OSError, ValueError, TypeError):
            pass
    return VerifyResult(image=row.get("image") or "", name=row.get("recipe", "?"), arch=None, accel="",
                        firmware=None, status="failed", reason=failure.reason, message=row.get("error", ""),
                        hint=row.get("hint"), serial_tail=list(failure.serial_tail),
                        serial_log=str(failure.serial_log) if failure.serial_log else None,
                        screenshot=str(failure.screenshot) if failure.screenshot else None)


def results_from_build(rows: list[dict]) -> list[VerifyResult]:
    """`ironforge build`'s per-recipe rows as VerifyResults: the verification when there was one
    (passed, or failed with its evidence), else an error or skipped row naming why."""
    out = []
    for row in rows:
        v = row.get("verification") or {}
        exc = row.get("_exc")
        failure = getattr(exc, "failure", None)
        if row.get("ok") and v.get("status") not in (None, SKIPPED):
            out.append(VerifyResult.from_dict(v))
        elif failure is not None:
            out.append(_from_failure(row, failure))
        else:
            skipped = row.get("ok")
            out.append(VerifyResult(image=row.get("image") or "", name=row.get("recipe", "?"), arch=None,
                                    accel="", firmware=None, status=SKIPPED if skipped else ERROR,
                                    reason=SKIPPED if skipped else "build",
                                    message="not verified (--no-verify)" if skipped else row.get("error", ""),
                                    hint=None if skipped else row.get("hint")))
    return out
