"""Download engine: one URL, streamed and hashed as it arrives, into the content-addressed store.

Layout under the store root (see builder/cache/store.py):

    downloads/sha256/<hex>        the file itself; its name is its verified sha256
    downloads/sha512/<hex>        a small JSON index {"sha256", "size"} for sources declared by
                                  sha512 only: written after both digests were computed while
                                  streaming, so a sha512 lookup lands on a file trusted by name
    downloads/by-url/<urlhash>    JSON {"url", "sha256"}: the last good copy of an *unpinned* URL
                                  (an InRelease, whose trust comes from its signature, not a pin);
                                  only --offline reads it
    downloads/tmp/<key>.part      a partial download and, beside it, <key>.part.json naming the URL
                                  and its validator (ETag / Last-Modified) for If-Range

A file lands in downloads/sha256 only by an atomic rename after its digest matched, so a cached
file is trusted by its name and never rehashed. A partial is only ever a prefix of bytes the
server sent; it is kept after a cut connection or a stall (the next run resumes it) and deleted
after anything that shows the bytes or the URL are wrong (4xx, digest mismatch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from builder.cache.store import Store, atomic_write_text
from builder.errors import ChecksumError, FetchError, UsageError

log = logging.getLogger("ironforge.fetch")

_HEX = {"sha256": 64, "sha512": 128}
_MISMATCH_HINT = ("the server sent other bytes than the expected digest says; check the digest "
                  "(the recipe's sha256/sha512 or --sha256/--sha512) and the URL or mirror")


@dataclass(frozen=True)
class FetchOptions:
    """Network knobs. Tests shrink them so faults surface in well under a second."""

    connect_timeout: float = 15.0
    read_timeout: float = 60.0       # no byte for this long = a stalled transfer
    retries: int = 4                 # further attempts after the first (connection errors, 5xx, cuts)
    backoff: float = 1.0             # seconds before the first retry, doubled each time
    backoff_max: float = 30.0
    max_redirects: int = 10
    chunk_size: int = 1 << 20
    user_agent: str = "ironforge/0.1 (+python-requests)"


class HttpStatusError(FetchError):
    """The server answered with an HTTP error status."""

    def __init__(self, url: str, status: int, reason: str = "", hint: str | None = None):
        super().__init__(f"{url}: HTTP {status} {reason}".rstrip(), hint)
        self.url = url
        self.status = status


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix (kept internal)."""

    def __init__(self, kind: str, detail: str, status: int | None = None):
        super().__init__(detail)
        self.kind = kind          # "connect" | "stall" | "cut" | "server"
        self.detail = detail
        self.status = status


def check_digest(algo: str, value: str | None) -> str | None:
    """Lower-cased hex digest, or UsageError for something that is not one."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if len(v) != _HEX[algo] or not re.fullmatch(r"[0-9a-f]+", v):
        raise UsageError(f"{algo} must be {_HEX[algo]} hex digits, got {value!r}")
    return v


def make_session(options: FetchOptions) -> requests.Session:
    s = requests.Session()
    s.max_redirects = options.max_redirects
    # identity: the store holds the bytes as published, never a transfer-decoded variant
    s.headers.update({"User-Agent": options.user_agent, "Accept-Encoding": "identity"})
    return s


def _urlhash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _sha512_index(store: Store, sha512: str) -> Path:
    return store.root / "downloads" / "sha512" / sha512


def _url_index(store: Store, url: str) -> Path:
    return store.root / "downloads" / "by-url" / _urlhash(url)


def cached(store: Store, *, sha256: str | None = None, sha512: str | None = None) -> Path | None:
    """The stored file for a digest, or None. Trusted by name (see module doc)."""
    if sha256:
        p = store.download_path(sha256)
        return p if p.is_file() else None
    if sha512:
        try:
            idx = json.loads(_sha512_index(store, sha512).read_text())
            p = store.download_path(idx["sha256"])
            if p.is_file() and p.stat().st_size == idx["size"]:
                return p
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def cached_unpinned(store: Store, url: str) -> Path | None:
    """The last good copy of an unpinned URL (for --offline), or None."""
    try:
        sha = json.loads(_url_index(store, url).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return cached(store, sha256=sha)


def fetch_url(store: Store, url: str, *, sha256: str | None = None, sha512: str | None = None,
              offline: bool = False, progress: bool = False, options: FetchOptions | None = None,
              session: requests.Session | None = None) -> Path:
    """Download ``url`` into the store unless a file with that digest is there; return its path.

    At least one of sha256/sha512 is required; the bytes must match every digest given.
    """
    sha256 = check_digest("sha256", sha256)
    sha512 = check_digest("sha512", sha512)
    if not sha256 and not sha512:
        raise UsageError(f"{url}: a sha256 or sha512 is required to fetch a file",
                         hint="give --sha256 HEX or --sha512 HEX (the digest published with the file)")
    hit = cached(store, sha256=sha256, sha512=sha512)
    if hit:
        log.debug("cache hit for %s: %s", url, hit)
        return hit
    if offline:
        raise _offline_miss(url)
    key = f"sha256-{sha256}" if sha256 else f"sha512-{sha512}"
    with store.download_lock(key):
        hit = cached(store, sha256=sha256, sha512=sha512)   # another build may have just finished it
        if hit:
            return hit
        return _Downloader(store, url, key, sha256, sha512, options or FetchOptions(), session,
                           progress, resume_across_runs=True).run_and_close()


def fetch_unpinned(store: Store, url: str, *, offline: bool = False, progress: bool = False,
                   options: FetchOptions | None = None,
                   session: requests.Session | None = None) -> Path:
    """Fetch a URL whose digest is not known in advance (always fresh unless offline).

    Only for files verified another way afterwards (an InRelease, by its signature). The copy
    is stored by its sha256 and remembered per URL so --offline can find it again.
    """
    if offline:
        hit = cached_unpinned(store, url)
        if hit is None:
            raise _offline_miss(url)
        return hit
    key = f"url-{_urlhash(url)[:40]}"
    with store.download_lock(key):
        path = _Downloader(store, url, key, None, None, options or FetchOptions(), session, progress,
                           resume_across_runs=False).run_and_close()
        atomic_write_text(_url_index(store, url), json.dumps({"url": url, "sha256": path.name}))
        return path


def _offline_miss(url: str) -> FetchError:
    return FetchError(f"{url} is not in the download cache and --offline forbids the network",
                      hint=f"run once without --offline to download {url}")


class _Downloader:
    """One download with its retries; state lives here, not in globals."""

    def __init__(self, store: Store, url: str, key: str, sha256: str | None, sha512: str | None,
                 opts: FetchOptions, session: requests.Session | None, progress: bool,
                 resume_across_runs: bool):
        self.store, self.url, self.key = store, url, key
        self.want256, self.want512 = sha256, sha512
        self.opts = opts
        self.own_session = session is None
        self.session = session or make_session(opts)
        self.progress = progress
        tmp = store.download_tmpdir()
        self.part = tmp / f"{key}.part"
        self.side = tmp / f"{key}.part.json"
        self.h256 = self.h512 = None
        self.hashed = 0                     # bytes of self.part already fed to the hashers
        self.validator: str | None = None   # ETag or Last-Modified of the bytes in self.part
        self.total: int | None = None       # full size the server announced
        self.resumed_old = False            # self.part holds bytes from an earlier run
        if not resume_across_runs:
            self._discard()
        else:
            self._adopt_partial()

    # -- partial file bookkeeping ---------------------------------------------------------
    def _adopt_partial(self) -> None:
        try:
            meta = json.loads(self.side.read_text())
            size = self.part.stat().st_size
        except (OSError, ValueError):
            self._discard()
            return
        if meta.get("url") != self.url or size == 0:
            # another mirror's validator means nothing here; start clean
            self._discard()
            return
        self.validator = meta.get("validator")
        self.resumed_old = True
        log.info("resuming %s from %d bytes", self.url, size)

    def _discard(self) -> None:
        for p in (self.part, self.side):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        self._reset_hashers()

    def _reset_hashers(self) -> None:
        self.h256 = hashlib.sha256()
        self.h512 = hashlib.sha512() if self.want512 else None
        self.hashed = 0

    def _hash_prefix(self) -> None:
        """Bring the hashers level with the partial file: once per run, then incrementally."""
        size = self.part.stat().st_size if self.part.exists() else 0
        if size == self.hashed:
            return
        self._reset_hashers()
        with open(self.part, "rb") as f:
            while chunk := f.read(self.opts.chunk_size):
                self._update(chunk)

    def _update(self, chunk) -> None:
        self.h256.update(chunk)
        if self.h512 is not None:
            self.h512.update(chunk)
        self.hashed += len(chunk)

    # -- the retry loop ----------------------------------------------------------------------
    def run_and_close(self) -> Path:
        try:
            return self.run()
        finally:
            if self.own_session:
                self.session.close()

    def run(self) -> Path:
        attempt = 0
        best = self.part.stat().st_size if self.part.exists() else 0
        clean_restart_done = False
        while True:
            try:
                self._attempt()
            except _Retry as exc:
                size = self.part.stat().st_size if self.part.exists() else 0
                if size > best:
                    # it got further than ever before: a flaky link that still makes progress
                    # is not given up on; the count restarts (bounded: the file has an end)
                    best, attempt = size, 0
                attempt += 1
                if attempt > self.opts.retries:
                    raise self._give_up(exc, attempt) from None
                delay = min(self.opts.backoff * (2 ** (attempt - 1)), self.opts.backoff_max)
                log.warning("%s: %s; retry %d/%d in %.1fs", self.url, exc.detail, attempt,
                            self.opts.retries, delay)
                time.sleep(delay)
                continue
            except FetchError:
                self._discard()
                raise
            try:
                return self._finish()
            except ChecksumError:
                if self.resumed_old and not clean_restart_done:
                    # the prefix from an earlier run may be stale: one clean download decides
                    log.warning("%s: digest mismatch after resuming an old partial; "
                                "downloading again from the start", self.url)
                    clean_restart_done = True
                    self.resumed_old = False
                    self.validator = None
                    self._discard()
                    continue
                raise

    def _give_up(self, exc: _Retry, attempts: int) -> FetchError:
        host = urlsplit(self.url).hostname or self.url
        tried = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        keep = self.part.exists() and self.part.stat().st_size > 0 and exc.kind in ("stall", "cut")
        if not keep:
            self._discard()
        resume = (" The partial download is kept; the next run resumes it." if keep else "")
        if exc.kind == "connect":
            return FetchError(f"cannot reach {host} for {self.url}: {exc.detail} ({tried})",
                              hint="check the network, the host name and any proxy settings")
        if exc.kind == "server":
            return HttpStatusError(self.url, exc.status or 500, f"(server error, {tried})",
                                   hint="the server is failing; try again later or use another mirror")
        if exc.kind == "stall":
            return FetchError(f"{self.url}: transfer stalled, no data for "
                              f"{self.opts.read_timeout:g} s ({tried})",
                              hint="the server stopped sending; try again later or use another "
                                   "mirror." + resume)
        return FetchError(f"{self.url}: {exc.detail} ({tried})",
                          hint="the connection keeps being cut or the server sends fewer bytes than "
                               "its Content-Length says; try again later or use another mirror."
                          + resume)

    def _attempt(self) -> None:
        offset = self.part.stat().st_size if self.part.exists() else 0
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        try:
            resp = self.session.get(self.url, stream=True, headers=headers, allow_redirects=True,
                                    timeout=(self.opts.connect_timeout, self.opts.read_timeout))
        except requests.TooManyRedirects:
            raise FetchError(f"{self.url}: too many redirects (more than {self.opts.max_redirects}; "
                             "a redirect loop?)",
                             hint="the server redirects in a circle; check the URL or the mirror") from None
        except requests.ConnectTimeout as exc:
            raise _Retry("connect", f"connection timed out ({exc.__class__.__name__})") from None
        except requests.ReadTimeout:
            raise _Retry("stall", "no response") from None
        except requests.ConnectionError as exc:
            raise _Retry("connect", _short(exc)) from None
        except requests.RequestException as exc:
            raise FetchError(f"{self.url}: {_short(exc)}", hint="check the URL") from None
        with resp:
            self._check_status(resp, offset)
            self._stream(resp)

    def _check_status(self, resp: requests.Response, offset: int) -> None:
        st = resp.status_code
        if st >= 500:
            raise _Retry("server", f"HTTP {st} {resp.reason}", status=st)
        if st == 416 and offset:
            # our partial is not a prefix of what the server now has: start over
            self._discard()
            raise _Retry("cut", "server refused the resume range (416); restarting")
        if st >= 400:
            raise HttpStatusError(self.url, st, resp.reason or "",
                                  hint="the file is not at this URL (check the URL, release and arch)"
                                  if st in (404, 410) else "the server refused the request")
        if st == 206 and offset:
            m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                self._discard()
                raise _Retry("cut", "server answered a different range; restarting")
            self.total = int(m.group(3)) if m.group(3) != "*" else None
            self._hash_prefix()
            return
        if st != 200:
            raise FetchError(f"{self.url}: unexpected HTTP {st} {resp.reason}",
                             hint="the server gave an answer that is not a file")
        if offset:
            log.info("%s: server sent the whole file (range ignored or file changed)", self.url)
        self._discard()
        self.resumed_old = False
        cl = resp.headers.get("Content-Length")
        self.total = int(cl) if cl and cl.isdigit() else None
        self.validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        if self.validator and self.validator.startswith("W/"):
            self.validator = None   # weak validators are not allowed with If-Range
        atomic_write_text(self.side, json.dumps({"url": self.url, "validator": self.validator}))

    def _stream(self, resp: requests.Response) -> None:
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=self.total, initial=self.hashed, unit="B", unit_scale=True,
                       unit_divisor=1024, desc=os.path.basename(urlsplit(self.url).path) or self.url,
                       leave=False)
        raw = resp.raw
        read = raw.read1   # whatever has arrived: a stall loses nothing already received
        chunk_size = self.opts.chunk_size
        try:
            with open(self.part, "ab") as f:
                kicked = f.tell()
                while True:
                    try:
                        chunk = read(chunk_size, decode_content=False)
                    except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
                        raise _Retry("stall", "no data") from None
                    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.HTTPError,
                            ConnectionError) as exc:
                        f.flush()
                        raise _Retry("cut", self._cut_detail(f.tell(), exc)) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    self._update(chunk)
                    if f.tell() - kicked >= _WRITEBACK_EVERY:
                        kicked = _start_writeback(f, kicked)
                    if bar is not None:
                        bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
                got = f.tell()
        finally:
            if bar is not None:
                bar.close()
        if self.total is not None and got < self.total:
            raise _Retry("cut", self._cut_detail(got, None))

    def _cut_detail(self, got: int, exc: Exception | None) -> str:
        of = f" of {self.total}" if self.total is not None else ""
        why = f" ({_short(exc)})" if exc is not None else ""
        return f"connection closed after {got}{of} bytes{why}"

    def _finish(self) -> Path:
        size = self.part.stat().st_size
        if self.hashed != size:
            self._hash_prefix()
        got256 = self.h256.hexdigest()
        got512 = self.h512.hexdigest() if self.h512 is not None else None
        if self.want256 and got256 != self.want256:
            self._discard()
            raise ChecksumError(self.url, "sha256", self.want256, got256,
                                hint=_MISMATCH_HINT)
        if self.want512 and got512 != self.want512:
            self._discard()
            raise ChecksumError(self.url, "sha512", self.want512, got512,
                                hint=_MISMATCH_HINT)
        final = self.store.adopt_download(self.part, got256)
        try:
            self.side.unlink()
        except FileNotFoundError:
            pass
        if self.want512:
            atomic_write_text(_sha512_index(self.store, self.want512),
                              json.dumps({"sha256": got256, "size": size}))
        # index files (InRelease, SHA256SUMS) are fetched on every plan: say so only with -v
        log.log(logging.INFO if size >= (1 << 20) else logging.DEBUG,
                "fetched %s (%d bytes, sha256 %s)", self.url, size, got256)
        return final


_WRITEBACK_EVERY = 8 << 20


def _start_writeback(f, start: int) -> int:
    """Ask the kernel to start writing [start, now) to disk without waiting for it.

    The store fsyncs every file before its rename; starting writeback while the download is
    still streaming overlaps the disk with the network, so that final fsync has little left to
    do (measured: about a fifth off a 200 MB fetch). POSIX_FADV_DONTNEED starts writeback of
    dirty pages on Linux and then drops the clean ones, which nobody needs in cache now.
    """
    f.flush()
    end = f.tell()
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(f.fileno(), start, end - start, os.POSIX_FADV_DONTNEED)
    return end


def _short(exc: BaseException | None) -> str:
    """The innermost useful words of a requests/urllib3 exception chain."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1).strip()
    for pat in (r"Failed to establish a new connection: ([^')]+)", r"\(([^()]*)\)\)?$"):
        m = re.search(pat, text)
        if m:
            return m.group(1).strip()
    return text[:200]
