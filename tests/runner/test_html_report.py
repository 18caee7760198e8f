"""The HTML verification report, from a real fleet run (conftest.tiny_fleet: one guest passes, one
kernel panics, one image is missing) plus a hostile stand-in result, rendered by headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from builder.errors import VerifyError
from builder.runner import html_report
from builder.runner.ppm import decode_png_size
from builder.runner.verify import VerifyResult
from chromium_support import Elements, dump_dom, screenshot
from png_support import decode, luminance_stats

pytestmark = pytest.mark.boot

HOSTILE_LINES = ["</pre><script>document.title='pwned'</script>",
                 '<img src="http://203.0.113.9/x.png" onerror="alert(1)">',
                 "<iframe src=https://203.0.113.9/></iframe> & done"]


def hostile_standin() -> VerifyResult:
    """A stand-in result whose every guest-supplied string is markup: a hostile guest's serial output."""
    return VerifyResult(image="/images/<b>evil</b>.qcow2", name='evil"><script>alert(2)</script>', arch="x86_64",
                        accel="tcg", firmware="bios", status="failed", reason="stall",
                        message="no console output: <script>alert(3)</script>", hint="<a href='http://x'>x</a>",
                        boot_seconds=12.0, serial_tail=HOSTILE_LINES,
                        timeline={"firmware": 1.0, "kernel": None, "userspace": None, "marker": None})


@pytest.fixture(scope="module")
def page(tiny_fleet, tmp_path_factory):
    results = [*tiny_fleet["results"], hostile_standin()]
    path = html_report.write(tmp_path_factory.mktemp("html") / "report.html", results)
    return path, results


def test_page_is_self_contained_and_escapes_guest_text(page):
    path, results = page
    text = path.read_text()
    doc = Elements(text)
    tags = {t for t, _ in doc.tags}
    assert not tags & {"script", "iframe", "link", "object", "embed", "base"}
    # nothing is fetched: every src/href is a data: URI or an anchor on the page
    for _t, attrs in doc.tags:
        for k in ("src", "href"):
            if k in attrs:
                assert attrs[k].startswith(("data:image/png;base64,", "#")), attrs
    csp = doc.find("meta", http_equiv="Content-Security-Policy")
    assert csp and "default-src 'none'" in csp[0]["content"]
    body = "".join(doc.text)
    for line in HOSTILE_LINES:
        assert line in body                            # shown as text, character for character
    assert "&lt;script&gt;" in text and "<script>" not in text
    # the panic's screenshot is embedded, byte for byte the PNG verification kept
    panics = results[1]
    (img,) = doc.find("img")
    png = base64.b64decode(img["src"].split(",", 1)[1])
    assert png == Path(panics.screenshot).read_bytes()
    assert decode_png_size(png)[0] >= 640


def test_renders_in_headless_chromium_with_every_verdict(page, tmp_path):
    path, results = page
    shot = screenshot(path, tmp_path / "shot.png")
    width, height, _bpp, _px = decode(shot)
    assert (width, height) == (1280, 1400)
    variance, colours = luminance_stats(shot)
    assert variance > 500 and colours > 50, (variance, colours)   # a blank page is one colour

    dom = Elements(dump_dom(path))
    verdicts = {a["data-image"]: a["data-verdict"] for a in dom.find("span") if "data-verdict" in a}
    assert verdicts == {"good": "passed", "panics": "failed", "missing": "error", results[3].name: "failed"}
    assert not [t for t, _ in dom.tags if t in ("script", "iframe")]   # the hostile text stayed text
    assert "".join(dom.text).count("pwned") == 1 and "PASS" in "".join(dom.text)
    summary = dom.find("div", id="summary")[0]
    assert (summary["data-passed"], summary["data-total"]) == ("1", "4")


def test_timeline_of_a_real_boot(tiny_fleet, page):
    good, panics = tiny_fleet["results"][:2]
    t = good.timeline
    assert all(t[p] is not None and t[p] > 0 for p in ("firmware", "kernel", "userspace", "marker")), t
    assert t["marker"] == pytest.approx(good.boot_seconds, abs=0.5)
    assert t["firmware"] + t["kernel"] + t["userspace"] <= t["marker"] + 0.5
    assert t["kernel"] + t["userspace"] == pytest.approx(good.guest_uptime, abs=0.01)   # the guest's own clock
    assert panics.timeline["userspace"] is None and panics.timeline["kernel_unfinished"] > 0
    text = page[0].read_text()
    assert text.count('class="seg kernel"') == 1 and 'class="seg kernel unfinished"' in text


def test_build_rows_become_report_rows(tiny_fleet, tmp_path):
    good, panics, _missing = tiny_fleet["results"]
    with pytest.raises(VerifyError) as failed:
        panics.raise_for_status()
    # the verify stage keeps a failure's evidence in one folder, the whole result as verify.json
    kept = tmp_path / "evidence"
    kept.mkdir()
    shutil.copy2(panics.serial_log, kept / "serial.log")
    (kept / "verify.json").write_text(json.dumps(dataclasses.replace(panics, name="kept").to_dict()))
    kept_error = VerifyError("kept: panicked", failure=dataclasses.replace(failed.value.failure,
                                                                         serial_log=kept / "serial.log"))
    rows = [{"recipe": "good", "ok": True, "verification": good.to_dict()},
            {"recipe": "panics", "ok": False, "error": failed.value.message, "_exc": failed.value},
            {"recipe": "kept", "ok": False, "error": kept_error.message, "_exc": kept_error},
            {"recipe": "broken", "ok": False, "error": "bootstrap: mmdebstrap failed", "hint": "see log",
             "_exc": RuntimeError("x")},
            {"recipe": "fast", "ok": True, "verification": {"status": "skipped"}}]
    got = html_report.results_from_build(rows)
    assert [(r.name, r.status) for r in got] == [("good", "passed"), ("panics", "failed"), ("kept", "failed"),
                                                 ("broken", "error"), ("fast", "skipped")]
    assert dataclasses.asdict(got[0]) == dataclasses.asdict(good)
    # without verify.json: what the error carries
    assert got[1].screenshot == panics.screenshot and got[1].serial_tail == panics.serial_tail
    assert got[1].reason == "panic" and got[1].timeline == {}
    # with it: the whole result, timeline and all
    assert dataclasses.asdict(got[2]) == dataclasses.asdict(dataclasses.replace(panics, name="kept"))
    assert got[3].message == "bootstrap: mmdebstrap failed"
    out = html_report.write(tmp_path / "r.html", got)
    html_report.write(out, got)                            # over an existing page: whole, no debris
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence", "r.html"]
    assert "SKIPPED" in out.read_text() and "not verified (--no-verify)" not in out.read_text().split("Failures")[1]
