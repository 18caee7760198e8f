"""Test helpers for the fetch tests: a loopback HTTP server with injectable faults, a throw-away
GnuPG key, and a tiny signed Debian archive (fixtures live in conftest.py)."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import re
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from builder.cache.store import Store

# -- the HTTP server -----------------------------------------------------------------------------


@dataclass
class Route:
    """How the server answers one path. Faults apply to the first N requests where noted."""

    data: bytes = b""
    status: int = 200
    fail_first: int = 0              # answer the first N requests with fail_status
    fail_status: int = 500
    cut_after: int | None = None     # send this many body bytes, then drop the connection …
    cut_times: int = 1 << 30         # … on the first N requests
    stall_after: int | None = None   # send this many bytes, then go silent for stall_seconds
    stall_seconds: float = 0.0
    stall_times: int = 1 << 30       # … on the first N requests
    length: int | None = None        # Content-Length to announce (a lie when != real length)
    redirect: str | None = None
    ranges: bool = True
    etag: str | None = '"v1"'
    slow: float = 0.0                # seconds to sleep per 64 KiB (keeps a download in flight)
    requests: list[dict] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):      # keep test output quiet
        pass

    def do_GET(self):
        route: Route | None = self.server.routes.get(self.path)
        if route is None:
            self._plain(404, b"not found")
            return
        with self.server.lock:
            route.requests.append(dict(self.headers))
            n = len(route.requests)
        if route.redirect:
            self.send_response(302)
            self.send_header("Location", route.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if n <= route.fail_first:
            self._plain(route.fail_status, b"failing on purpose")
            return
        if route.status != 200:
            self._plain(route.status, b"no")
            return
        data, start, status = route.data, 0, 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and route.ranges and (if_range is None or if_range == route.etag):
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(route.length if route.length is not None else len(body)))
        if route.etag:
            self.send_header("ETag", route.etag)
        if route.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        try:
            if route.cut_after is not None and n <= route.cut_times:
                self.wfile.write(body[:route.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            if route.stall_after is not None and n <= route.stall_times:
                self.wfile.write(body[:route.stall_after])
                self.wfile.flush()
                time.sleep(route.stall_seconds)
                self.close_connection = True
                return
            if route.slow:
                for i in range(0, len(body), 65536):
                    self.wfile.write(body[i:i + 65536])
                    time.sleep(route.slow)
            else:
                self.wfile.write(body)
            if route.length is not None and route.length != len(body):
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _plain(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # clients here drop connections on purpose (timeouts, cuts): not worth a traceback
        pass


class LoopbackServer:
    def __init__(self):
        self.httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self._n = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, path: str, route: Route) -> str:
        self.httpd.routes[path] = route
        return self.base + path

    def unique(self, name: str) -> str:
        self._n += 1
        return f"/t{self._n}/{name}"

    def add_tree(self, prefix: str, root: Path, skip=lambda rel: False) -> str:
        """Serve every file under ``root`` at ``prefix``/<relative path>."""
        for p in root.rglob("*"):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not skip(rel):
                self.add(f"{prefix}/{rel}", Route(data=p.read_bytes()))
        return self.base + prefix

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def assert_store_sane(store: Store, good: bytes | None = None) -> None:
    """No file under downloads/sha256 with wrong content; a partial only as a prefix of ``good``."""
    d = store.root / "downloads" / "sha256"
    for p in (d.iterdir() if d.exists() else []):
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name, f"bad stored file {p}"
    tmp = store.root / "downloads" / "tmp"
    for p in (tmp.glob("*.part") if tmp.exists() else []):
        part = p.read_bytes()
        assert good is not None and good.startswith(part), f"leftover partial {p} is not a valid prefix"
    for p in (tmp.iterdir() if tmp.exists() else []):
        assert p.suffix in (".part", ".json"), f"stray temporary file {p}"


def stored(store: Store) -> list[Path]:
    d = store.root / "downloads" / "sha256"
    return sorted(d.iterdir()) if d.exists() else []


def partials(store: Store) -> list[Path]:
    tmp = store.root / "downloads" / "tmp"
    return sorted(tmp.glob("*.part")) if tmp.exists() else []


# -- a throw-away OpenPGP key ---------------------------------------------------------------------


@dataclass
class Signer:
    home: Path
    keyring: Path          # public key exported for gpgv
    fpr: str

    def clearsign(self, text: str) -> bytes:
        env = dict(os.environ, GNUPGHOME=str(self.home))
        return subprocess.run(["gpg", "--batch", "--yes", "--local-user", self.fpr, "--clearsign"],
                              input=text.encode(), capture_output=True, env=env, check=True).stdout


def make_signer(base: Path, uid: str) -> Signer:
    home = base / "gnupg"
    home.mkdir(parents=True, mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign",
                    "never"], env=env, check=True, capture_output=True)
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys", uid], env=env, check=True,
                         capture_output=True, text=True).stdout
    fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    keyring = base / "keyring.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--batch", "--export", fpr], env=env, check=True,
                                       capture_output=True).stdout)
    return Signer(home, keyring, fpr)


def kill_agent(s: Signer) -> None:
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=dict(os.environ, GNUPGHOME=str(s.home)),
                   capture_output=True)


# -- a tiny Debian archive --------------------------------------------------------------------------


def make_deb(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None,
             compression: str = "xz") -> None:
    """A minimal .deb: ar archive of debian-binary, control.tar.xz, data.tar.<compression>."""
    def tar_bytes(entries: dict[str, bytes], links: dict[str, str], mode: str) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as t:
            for name, data in entries.items():
                info = tarfile.TarInfo("./" + name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            for name, target in links.items():
                info = tarfile.TarInfo("./" + name)
                info.type = tarfile.SYMTYPE
                info.linkname = target
                t.addfile(info)
        return buf.getvalue()

    members = [("debian-binary", b"2.0\n"),
               ("control.tar.xz", tar_bytes({"control": b"Package: fake\n"}, {}, "w:xz")),
               (f"data.tar.{compression}", tar_bytes(files, symlinks or {}, f"w:{compression}"))]
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        hdr = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        assert len(hdr) == 60
        out += hdr + data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))


@dataclass
class FakeArchive:
    root: Path
    suite: str
    arch: str
    kernel: bytes
    initrd: bytes
    iso: bytes
    deb_name: str

    @property
    def images(self) -> str:
        return f"dists/{self.suite}/main/installer-{self.arch}/current/images"


def build_archive(root: Path, signer: Signer, *, suite="bookworm", arch="amd64", number="12",
                  kernel: bytes | None = None, packaged_kernel: bytes | None = None,
                  tamper_release=None, sums_override: bytes | None = None,
                  index: str = "xz") -> FakeArchive:
    """dists/<suite>/{InRelease,Release}, the installer images tree, Packages.xz and the netboot .deb.

    ``packaged_kernel`` puts different bytes in the .deb than SHA256SUMS lists;
    ``tamper_release(text) -> text`` edits the InRelease after signing;
    ``sums_override`` serves a SHA256SUMS other than the one the Release lists;
    ``index`` is the Packages compression ("xz" or "gz").
    """
    kernel = kernel or (b"fake kernel " + arch.encode() + b" " + os.urandom(3000))
    initrd = b"\x1f\x8b" + os.urandom(5000)
    iso = b"fake iso " + os.urandom(2000)
    images = root / "dists" / suite / "main" / f"installer-{arch}" / "current" / "images"
    nb = images / "netboot" / "debian-installer" / arch
    nb.mkdir(parents=True)
    (nb / "linux").write_bytes(kernel)
    (nb / "initrd.gz").write_bytes(initrd)
    (images / "netboot" / "mini.iso").write_bytes(iso)
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  ./{p}\n" for p, d in [
        (f"netboot/debian-installer/{arch}/initrd.gz", initrd),
        (f"netboot/debian-installer/{arch}/linux", kernel),
        ("netboot/mini.iso", iso)])
    (images / "SHA256SUMS").write_text(sums)

    deb_name = f"debian-installer-{number}-netboot-{arch}_20230607+deb12u15_all.deb"
    pool = root / "pool" / "main" / "d" / "debian-installer-netboot-images"
    pool.mkdir(parents=True)
    base = f"usr/lib/debian-installer/images/{number}/{arch}/text/debian-installer/{arch}"
    make_deb(pool / deb_name, {f"{base}/linux": packaged_kernel or kernel, f"{base}/initrd.gz": initrd,
                               f"usr/share/doc/debian-installer-{number}-netboot-{arch}/copyright": b"x"})
    deb = (pool / deb_name).read_bytes()
    stanza = (f"Package: debian-installer-{number}-netboot-{arch}\nSource: debian-installer-netboot-images\n"
              f"Version: 20230607+deb12u15\nArchitecture: all\n"
              f"Filename: pool/main/d/debian-installer-netboot-images/{deb_name}\n"
              f"Size: {len(deb)}\nSHA256: {hashlib.sha256(deb).hexdigest()}\n")
    other = "Package: hello\nVersion: 1\nArchitecture: amd64\nFilename: pool/main/h/hello.deb\n"
    bin_dir = root / "dists" / suite / "main" / f"binary-{arch}"
    bin_dir.mkdir(parents=True)
    packages = (other + "\n" + stanza).encode()
    if index == "xz":
        (bin_dir / "Packages.xz").write_bytes(lzma.compress(packages))
    else:
        (bin_dir / "Packages.gz").write_bytes(gzip.compress(packages))

    listed = [images / "SHA256SUMS", bin_dir / f"Packages.{index}"]
    dist = root / "dists" / suite
    lines = "".join(f" {hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_size:>8} "
                    f"{p.relative_to(dist).as_posix()}\n" for p in listed)
    release = (f"Origin: Debian\nLabel: Debian\nSuite: stable\nVersion: {number}.99\nCodename: {suite}\n"
               f"Date: Sat, 11 Jul 2026 10:16:37 UTC\nArchitectures: {arch}\nComponents: main\n"
               f"Description: fake\nSHA256:\n{lines}")
    (dist / "Release").write_text(release)
    signed = signer.clearsign(release)
    if tamper_release:
        signed = tamper_release(signed.decode()).encode()
    (dist / "InRelease").write_bytes(signed)
    if sums_override is not None:
        (images / "SHA256SUMS").write_bytes(sums_override)
    return FakeArchive(root, suite, arch, kernel, initrd, iso, deb_name)


