"""A loopback Debian mirror for real bootstraps that a test can "update": the suite's Release is
our own (signed with a throw-away key, Date of our choosing), its Packages index is Debian's real
bookworm amd64 index (fetched and verified against Debian's own keyring) plus a few small
packages we build with dpkg-deb; every other pool file is a redirect to deb.debian.org, which
apt follows and checks against our index's SHA256. Bumping the mirror re-signs a Release with a
later Date and new versions of our packages, so mmdebstrap builds a guest whose package list
really differs.
"""

from __future__ import annotations

import hashlib
import lzma
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fetch_support import Signer
from rebuild_support import release_text

from builder.cache.store import Store
from builder.fetch.debian import fetch_listed, inrelease

UPSTREAM = "http://deb.debian.org/debian"
SUITE = "bookworm"
INDEX = "main/binary-amd64/Packages"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            body = srv.files.get(self.path)
            srv.requests.append(self.path)
        if body is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/debian/pool/"):
            self.send_response(302)
            self.send_header("Location", UPSTREAM + self.path[len("/debian"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


def _deb(work: Path, name: str, version: str, depends: str | None) -> bytes:
    root = work / f"{name}_{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "version").write_text(version + "\n")
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: ironforge tests "
               f"<tests@ironforge.invalid>\nSection: misc\nPriority: optional\n"
               + (f"Depends: {depends}\n" if depends else "")
               + f"Description: ironforge rebuild test package\n stand-in upstream change {version}\n")
    (root / "DEBIAN" / "control").write_text(control)
    out = work / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return out.read_bytes()


@dataclass
class Mirror:
    signer: Signer
    work: Path
    base_index: bytes
    httpd: ThreadingHTTPServer = field(init=False)
    date: float = 1783764997.0          # Sat, 11 Jul 2026 10:16:37 UTC

    def __post_init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.files, self.httpd.requests, self.httpd.lock = {}, [], threading.Lock()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/debian"

    def serve(self, ours: list[tuple[str, str, str | None]]) -> None:
        """A new archive state: Debian's index plus ``ours`` (name, version, depends), signed."""
        files = {}
        stanzas = []
        for name, version, depends in ours:
            data = _deb(self.work, name, version, depends)
            path = f"pool/main/i/{name}/{name}_{version}_all.deb"
            files[f"/debian/{path}"] = data
            stanzas.append(f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
                           f"Maintainer: ironforge tests <tests@ironforge.invalid>\nPriority: optional\n"
                           f"Section: misc\n" + (f"Depends: {depends}\n" if depends else "")
                           + f"Filename: {path}\nSize: {len(data)}\n"
                           f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
                           f"Description: ironforge rebuild test package\n")
        index = self.base_index.rstrip(b"\n") + b"\n\n" + "\n".join(stanzas).encode()
        rel = release_text(self.date, {INDEX: index})
        files[f"/debian/dists/{SUITE}/{INDEX}"] = index
        files[f"/debian/dists/{SUITE}/Release"] = rel.encode()
        files[f"/debian/dists/{SUITE}/InRelease"] = self.signer.clearsign(rel)
        with self.httpd.lock:
            self.httpd.files = files

    def bump(self, ours: list[tuple[str, str, str | None]], days: int = 1) -> None:
        self.date += days * 86400
        self.serve(ours)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def debian_index(store: Store) -> bytes:
    """Debian's real bookworm amd64 Packages index, verified through the product's own chain."""
    rel = inrelease(UPSTREAM, SUITE, store)
    return lzma.decompress(fetch_listed(rel, INDEX + ".xz", store).read_bytes())


STATE_A = [("ironforge-canary", "1.0", "ironforge-canary-old"), ("ironforge-canary-old", "1.0", None)]
STATE_B = [("ironforge-canary", "2.0", "ironforge-canary-dep"), ("ironforge-canary-old", "1.0", None),
           ("ironforge-canary-dep", "1.0", None)]


def write_recipe(recipes: Path, repo: Path, mirror: Mirror, name: str = "rebuild-e2e") -> None:
    """A Debian 12 amd64 recipe on the loopback mirror, with our package, in its own folder."""
    recipes.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / "recipes" / "debian-12-amd64.toml", recipes / "debian-12-amd64.toml")
    shutil.copy(mirror.signer.keyring, recipes / "mirror.gpg")
    (recipes / f"{name}.toml").write_text(
        'extends = "debian-12-amd64"\n'
        'description = "rebuild test: Debian 12 from a loopback mirror we update"\n'
        "[build]\n"
        f'mirror = "{mirror.url}"\n'
        'keyring = "mirror.gpg"\n'
        'packages = ["ironforge-canary"]\n')
