"""The OCI distribution API, the few calls a stage cache needs, over requests.

Blobs are pushed monolithically (``POST`` an upload, ``PUT <location>?digest=`` with the
streamed file) after a ``HEAD`` shows the registry lacks them; manifests are ``PUT`` by tag.
Pulled blobs are hashed as they stream to disk and refused on any mismatch (size or digest);
a manifest is read whole, bounded, and checked against the digest the registry names.

Authentication answers the registry's ``WWW-Authenticate`` challenge: ``Basic`` sends the
credentials, ``Bearer`` fetches a token from the realm it names (with the credentials, when
there are any). Credentials and tokens live in request headers only: never in a URL, a log line
or an error message.

Timeouts are short (a registry that is down or stalled must cost a build seconds, not minutes):
``CONNECT`` to connect, ``READ`` for any one read of a response.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import queue
import re
import threading
from typing import BinaryIO, Callable
from urllib.parse import urljoin

import requests

from builder.cache.remote.address import RemoteAddress
from builder.cache.remote.credentials import Credentials
from builder.errors import RemoteCacheCorrupt, RemoteCacheError

log = logging.getLogger("ironforge.remote")

CONNECT = 3.0
READ = 10.0
MAX_TOKEN_RESPONSE = 1 << 20   # a token answer is a small JSON document
MAX_MANIFEST = 4 << 20          # the spec's floor for what registries must accept
CHUNK = 1 << 20
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class Unavailable(RemoteCacheError):
    """Cannot talk to the registry (down, slow, 5xx, broken connection)."""


class Refused(RemoteCacheError):
    """The registry answered, and said no (401/403 after auth, 4xx on a write)."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise RemoteCacheCorrupt(f"unsupported or malformed digest {str(digest)[:80]!r} (only sha256)")
    return digest


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class Registry:
    def __init__(self, address: RemoteAddress, credentials: Credentials | None,
                 connect: float = CONNECT, read: float = READ):
        self.address = address
        self.credentials = credentials
        self.timeout = (connect, read)
        self.http = requests.Session()
        self._auth: str | None = None        # the Authorization header value, once known

    # -- plumbing --------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.address.base}/{path}"

    def _send(self, method: str, url: str, *, body: Callable[[], object] | None = None,
              headers: dict | None = None, stream: bool = False) -> requests.Response:
        """One request, answering one auth challenge; ``body`` is a factory so a retry after
        the challenge sends the whole body again."""
        for attempt in (0, 1):
            h = dict(headers or {})
            if self._auth:
                h["Authorization"] = self._auth
            try:
                resp = self.http.request(method, url, data=body() if body else None, headers=h,
                                         stream=stream, timeout=self.timeout, allow_redirects=True)
            except requests.RequestException as exc:
                raise Unavailable(self._why(exc)) from None
            if resp.status_code == 401 and attempt == 0 and "WWW-Authenticate" in resp.headers:
                resp.close()
                self._authenticate(resp.headers["WWW-Authenticate"])
                continue
            if resp.status_code >= 500:
                resp.close()
                raise Unavailable(f"{self.address}: {method} answered HTTP {resp.status_code}")
            if resp.status_code in (401, 403):
                resp.close()
                raise Refused(f"{self.address}: {method} refused (HTTP {resp.status_code}); "
                              f"credentials {'from ' + self.credentials.source if self.credentials else 'none found'}")
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _why(self, exc: requests.RequestException) -> str:
        """Short words for a failed request (requests' own text repeats the whole URL)."""
        if isinstance(exc, requests.ConnectTimeout):
            return f"no connection within {self.timeout[0]:g} s (ConnectTimeout)"
        if isinstance(exc, requests.ReadTimeout):
            return f"no answer within {self.timeout[1]:g} s (ReadTimeout)"
        if isinstance(exc, requests.ConnectionError):
            inner = exc.args[0] if exc.args else exc
            reason = getattr(inner, "reason", inner)
            text = str(reason).split(": ", 1)[-1] if reason is not None else ""
            return f"cannot connect (ConnectionError: {text[:120]})"
        return f"{type(exc).__name__}"

    def _authenticate(self, header: str) -> None:
        scheme, params = _challenge(header)
        creds = self.credentials
        basic = None
        if creds is not None:
            basic = "Basic " + base64.b64encode(f"{creds.user}:{creds.password}".encode()).decode()
        if scheme == "basic":
            if basic is None:
                raise Refused(f"{self.address}: the registry wants credentials and none were found")
            self._auth = basic
            return
        if scheme != "bearer" or not params.get("realm", "").startswith(("https://", "http://")):
            raise Refused(f"{self.address}: unsupported authentication scheme {scheme!r}")
        # the realm is named by the registry's answer: credentials go to it only over TLS, unless
        # the user chose plain HTTP for this registry (oci+http://) in the first place
        if params["realm"].startswith("http://") and self.address.scheme != "http":
            raise Refused(f"{self.address}: the registry names a token service without TLS "
                          f"({params['realm'].split('?')[0]}); credentials are not sent there")
        query = {k: params[k] for k in ("service", "scope") if params.get(k)}
        query.setdefault("scope", f"repository:{self.address.repo}:pull,push")
        try:
            resp = self.http.get(params["realm"], params=query, timeout=self.timeout, stream=True,
                                 headers={"Authorization": basic} if basic else {})
        except requests.RequestException as exc:
            raise Unavailable(f"{self.address}: token service: {type(exc).__name__}") from None
        with resp:
            if resp.status_code != 200:
                raise Refused(f"{self.address}: the token service answered HTTP {resp.status_code}")
            data = _read_bounded(resp, MAX_TOKEN_RESPONSE, f"{self.address}: token service")
        try:
            doc = json.loads(data)
            token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise Refused(f"{self.address}: the token service sent no token")
        self._auth = f"Bearer {token}"

    # -- manifests -----------------------------------------------------------------------
    def manifest_head(self, ref: str) -> dict | None:
        """The descriptor of the manifest ``ref`` (a tag or a digest) names, or None."""
        resp = self._send("HEAD", self.url(f"manifests/{ref}"), headers={"Accept": ", ".join(MANIFEST_TYPES)})
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise Unavailable(f"{self.address}: HEAD manifest answered HTTP {resp.status_code}")
        digest = resp.headers.get("Docker-Content-Digest")
        size = resp.headers.get("Content-Length")
        if digest is None or size is None or not size.isdigit():
            # some registries leave the digest out of HEAD: read the manifest instead
            got = self.manifest_get(ref)
            return None if got is None else descriptor(got[0], got[1])
        return {"mediaType": resp.headers.get("Content-Type", MANIFEST_TYPES[0]).split(";")[0],
                "digest": check_digest(digest), "size": int(size)}

    def manifest_get(self, ref: str) -> tuple[bytes, str] | None:
        """(the manifest's bytes, its media type), or None when the registry has no ``ref``."""
        resp = self._send("GET", self.url(f"manifests/{ref}"), stream=True,
                          headers={"Accept": ", ".join(MANIFEST_TYPES)})
        with resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise Unavailable(f"{self.address}: GET manifest answered HTTP {resp.status_code}")
            data = _read_bounded(resp, MAX_MANIFEST, f"{self.address}: manifest {ref}")
            mtype = resp.headers.get("Content-Type", "").split(";")[0]
            named = resp.headers.get("Docker-Content-Digest")
        if named is not None and check_digest(named) != sha256_digest(data):
            raise RemoteCacheCorrupt(f"{self.address}: manifest {ref}: bytes do not match the digest "
                                     f"the registry names ({named})")
        if ref.startswith("sha256:") and sha256_digest(data) != ref:
            raise RemoteCacheCorrupt(f"{self.address}: manifest {ref}: bytes do not match its digest")
        return data, mtype

    def manifest_put(self, tag: str, data: bytes, media_type: str) -> str:
        resp = self._send("PUT", self.url(f"manifests/{tag}"), body=lambda: data,
                          headers={"Content-Type": media_type})
        text = resp.text[:300]
        resp.close()
        if resp.status_code not in (200, 201):
            raise Refused(f"{self.address}: manifest {tag} refused (HTTP {resp.status_code}: {text})")
        return sha256_digest(data)

    # -- blobs ---------------------------------------------------------------------------
    def blob_exists(self, digest: str) -> bool:
        resp = self._send("HEAD", self.url(f"blobs/{check_digest(digest)}"))
        resp.close()
        if resp.status_code in (200, 307):
            return True
        if resp.status_code == 404:
            return False
        raise Unavailable(f"{self.address}: HEAD blob answered HTTP {resp.status_code}")

    def blob_push(self, digest: str, size: int, opener: Callable[[], BinaryIO]) -> None:
        """Upload a blob unless the registry has it. ``opener`` gives the bytes from the start."""
        if self.blob_exists(digest):
            return
        start = self._send("POST", self.url("blobs/uploads/"), headers={"Content-Length": "0"})
        start.close()
        location = start.headers.get("Location")
        if start.status_code != 202 or not location:
            raise Refused(f"{self.address}: starting an upload answered HTTP {start.status_code}")
        target = urljoin(self.url("blobs/uploads/"), location)
        target += ("&" if "?" in target else "?") + f"digest={digest}"
        files: list[BinaryIO] = []

        def body():
            for f in files:
                f.close()
            files.append(opener())
            return files[-1]
        try:
            resp = self._send("PUT", target, body=body,
                              headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        finally:
            for f in files:
                f.close()
        resp.close()
        if resp.status_code not in (201, 204):
            raise Refused(f"{self.address}: blob {digest} refused (HTTP {resp.status_code})")

    def blob_pull(self, digest: str, size: int, dst: BinaryIO) -> None:
        """Stream the blob into ``dst``; RemoteCacheCorrupt unless it has exactly ``size``
        bytes hashing to ``digest`` (then ``dst`` holds junk the caller must throw away)."""
        check_digest(digest)
        got = 0
        resp = self._send("GET", self.url(f"blobs/{digest}"), stream=True)
        with resp:
            if resp.status_code != 200:
                if resp.status_code == 404:
                    raise RemoteCacheCorrupt(f"{self.address}: blob {digest} is missing")
                raise Unavailable(f"{self.address}: GET blob answered HTTP {resp.status_code}")
            sink = _Sink(dst)
            try:
                for block in resp.iter_content(CHUNK):
                    got += len(block)
                    if got > size:
                        break
                    sink.put(block)
            except requests.RequestException as exc:
                raise Unavailable(f"{self.address}: blob {digest}: {type(exc).__name__}") from None
            finally:
                hexdigest = sink.close()
        if got != size or "sha256:" + hexdigest != digest:
            raise RemoteCacheCorrupt(f"blob {digest} does not match its digest"
                                     + ("" if got == size else f" (size {'>' if got > size else ''}{got}, expected {size})"))


class _Sink:
    """Hashes and writes blocks in a thread of its own while the caller reads the socket:
    sha256 and the disk release the GIL, so a pull runs at about the network's speed instead of
    network + hash + write one after the other."""

    def __init__(self, dst: BinaryIO):
        self.dst = dst
        self.hash = hashlib.sha256()
        self.queue: queue.Queue = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="blob-sink", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (block := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.hash.update(block)
                    self.dst.write(block)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller in close()
                    self.error = exc

    def put(self, block: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(block)

    def close(self) -> str:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.hash.hexdigest()


def descriptor(data: bytes, media_type: str) -> dict:
    return {"mediaType": media_type or MANIFEST_TYPES[0], "digest": sha256_digest(data), "size": len(data)}


def _read_bounded(resp: requests.Response, limit: int, what: str) -> bytes:
    out = bytearray()
    try:
        for block in resp.iter_content(CHUNK):
            out += block
            if len(out) > limit:
                raise RemoteCacheCorrupt(f"{what}: larger than {limit} bytes")
    except requests.RequestException as exc:
        raise Unavailable(f"{what}: {type(exc).__name__}") from None
    return bytes(out)


