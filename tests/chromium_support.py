"""Headless Chromium (Debian `chromium`) for tests: render a page to a PNG, or dump its DOM."""

from __future__ import annotations

import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from builder.host import proc


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is missing: apt-get install chromium (it is in the Makefile's DEB_PACKAGES)")


def _run(page: Path, *args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        # root needs --no-sandbox; a private profile lets tests run side by side
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--hide-scrollbars",
               *args, Path(page).resolve().as_uri()]
        return proc.run(cmd, what="chromium --headless", timeout=180,
                        env={"HOME": profile, "PATH": "/usr/bin:/bin"}).stdout


def screenshot(page: Path, png: Path, size: str = "1280,1400") -> bytes:
    _run(page, f"--screenshot={png}", f"--window-size={size}")
    return Path(png).read_bytes()


def dump_dom(page: Path) -> str:
    return _run(page, "--dump-dom")


class Elements(HTMLParser):
    """Every start tag in a document, with its attributes and the text inside it (flat)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]
