"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8) on loopback,
with its own config file, a temporary storage folder and a free port; stopped afterwards.

Authentication: none, htpasswd (``registry(user=, password=)``), or the registry's own token
auth (``registry(issuer=TokenIssuer(token_key(folder), users))``): the registry then answers
``WWW-Authenticate: Bearer`` and itself verifies every token it is shown (the RS256 signature,
by the certificate in the token's ``x5c`` header chained to ``rootcertbundle``; issuer, audience,
expiry; the repository and actions granted). The tokens come from ``TokenIssuer``, a STAND-IN for
a token server (Debian packages none); its throw-away key and certificate from ``token_key``."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

with warnings.catch_warnings():     # deprecated in 3.11, and the one bcrypt maker at hand here
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

BINARY = "docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- token auth -------------------------------------------------------------------------------

SERVICE = "ironforge-test-registry"
ISSUER = "ironforge-test-issuer"


@dataclass(frozen=True)
class TokenKey:
    """A throw-away RSA key and its self-signed certificate (the registry's ``rootcertbundle``)."""
    key: rsa.RSAPrivateKey
    cert_der: bytes
    cert_pem: Path


def token_key(folder: Path, name: str = "issuer") -> TokenKey:
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ironforge test token {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    pem = folder / f"{name}.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TokenKey(key, cert.public_bytes(serialization.Encoding.DER), pem)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(key: TokenKey, claims: dict) -> str:
    """An RS256 JWS compact token, by hand: the key is named by ``x5c`` (its certificate, which
    distribution 2.8 chains to the rootcertbundle)."""
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(key.cert_der).decode()]}
    signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    signature = key.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:NAME:pull,push`` -> ("repository", NAME, [actions]); NAME may hold ':' (a
    registry host with a port), so the actions are after the last one."""
    rtype, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    return rtype, name, [a for a in actions.split(",") if a]


@dataclass
class TokenIssuer:
    """A STAND-IN for a registry token server (Debian packages none): the real registry verifies
    what it signs, so everything it gets wrong shows as a refusal there.

    GET /token?service=...&scope=repository:NAME:pull,push with HTTP basic credentials: a user
    of ``users`` (name -> (password, {repository: allowed actions})) gets a JWT granting the
    actions asked for that it may have, and nothing else (a read-only user gets ``pull`` only; a
    repository it has no grant on, nothing). Wrong or missing credentials: 401, no token. Each
    request is recorded in ``requests`` (user, scopes asked, access granted, status): never the
    password."""
    key: TokenKey
    users: dict[str, tuple[str, dict[str, set[str]]]]
    lifetime: int = 300
    fields: tuple[str, ...] = ("token", "access_token")     # which names the answer gives the token
    port: int = 0
    requests: list[dict] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def mint(self, sub: str, access: list[dict], *, lifetime: int | None = None, key: TokenKey | None = None,
             service: str = SERVICE) -> str:
        now = int(time.time())
        return jwt(key or self.key, {"iss": ISSUER, "sub": sub, "aud": service, "exp": now + (lifetime or self.lifetime),
                                     "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access})

    def grant(self, user: str, scopes: list[str]) -> list[dict]:
        allowed = self.users[user][1]
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None or parsed[0] != "repository":
                continue
            _, name, actions = parsed
            ok = [a for a in actions if a in allowed.get(name, set())]
            if ok:
                access.append({"type": "repository", "name": name, "actions": ok})
        return access

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = parse_qs(url.query)
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        record: dict = {"user": None, "scopes": scopes, "service": query.get("service", [None])[0],
                        "access": None, "status": 401}
        self.requests.append(record)
        user = password = None
        auth = handler.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user = None
        record["user"] = user
        if url.path != "/token":
            status, body = 404, {"errors": [{"code": "NOT_FOUND"}]}
        elif record["service"] != SERVICE:
            status, body = 400, {"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]}
        elif user not in self.users or self.users[user][0] != password:
            status, body = 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication failed"}]}
        else:
            access = self.grant(user, scopes)
            token = self.mint(user, access)
            status = 200
            record["access"] = access
            body = {**{f: token for f in self.fields}, "expires_in": self.lifetime,
                    "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        record["status"] = status
        data = json.dumps(body).encode()
        handler.send_response(status)
        if status == 401:
            handler.send_header("WWW-Authenticate", 'Basic realm="ironforge-test-issuer"')
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def start(self) -> "TokenIssuer":
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                issuer._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="token-issuer", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Bearer(requests.auth.AuthBase):
    """requests auth sending a token as it is (for the test's own look at the registry)."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


# -- the registry ------------------------------------------------------------------------------

@dataclass
class RegistryServer:
    root: Path
    port: int
    htpasswd: Path | None = None
    proc: subprocess.Popen | None = None
    issuer: TokenIssuer | None = None        # token auth: the registry trusts this issuer's key

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, repo: str = "ironforge/stages") -> str:
        return f"oci+http://{self.hostport}/{repo}"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def config(self) -> Path:
        cfg = self.root / "config.yml"
        auth = (f"auth:\n  htpasswd:\n    realm: ironforge-test\n    path: {self.htpasswd}\n"
                if self.htpasswd else "")
        if self.issuer is not None:
            auth = (f"auth:\n  token:\n    realm: {self.issuer.realm}\n    service: {SERVICE}\n"
                    f"    issuer: {ISSUER}\n    rootcertbundle: {self.issuer.key.cert_pem}\n")
        cfg.write_text(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {self.hostport}
  secret: ironforge-test-secret
{auth}""")
        return cfg

    def start(self) -> "RegistryServer":
        self.storage.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "registry.log", "ab")
        self.proc = subprocess.Popen([BINARY, "serve", str(self.config())], stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
            try:
                if requests.get(f"http://{self.hostport}/v2/", timeout=1).status_code in (200, 401):
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not answer within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def blob_file(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def blobs(self) -> set[str]:
        """The digests of every blob in the storage folder (read from disk, not the API)."""
        top = self.storage / "docker/registry/v2/blobs/sha256"
        return {"sha256:" + p.parent.name for p in top.glob("*/*/data")}

    def uploads(self, repo: str = "ironforge/stages") -> list[Path]:
        """Uploads begun and not finished (read from disk)."""
        return sorted((self.storage / "docker/registry/v2/repositories" / repo / "_uploads").glob("*"))

    def tags(self, repo: str = "ironforge/stages", auth=None) -> list[str]:
        r = requests.get(f"http://{self.hostport}/v2/{repo}/tags/list", timeout=5, auth=auth)
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return sorted(r.json().get("tags") or [])


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    # distribution accepts bcrypt only; glibc's libxcrypt makes it. Cost 4 (16 rounds): the
    # registry checks it on every request, and the default cost would make each one ~0.3 s here
    path.write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n")
    return path


@contextlib.contextmanager
def registry(tmp: Path, *, user: str | None = None, password: str | None = None,
             issuer: TokenIssuer | None = None) -> Iterator[RegistryServer]:
    """A started registry: no auth, htpasswd (``user``/``password``), or token auth trusting
    ``issuer`` (started here, and stopped with the registry)."""
    if shutil.which(BINARY) is None:
        raise RuntimeError(f"{BINARY} is not installed (make setup installs the docker-registry package)")
    tmp.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(tmp / "htpasswd", user, password) if user else None
    if issuer is not None:
        issuer.start()
    try:
        server = RegistryServer(tmp, free_port(), htpasswd, issuer=issuer).start()
    except BaseException:
        if issuer is not None:
            issuer.stop()
        raise
    try:
        yield server
    finally:
        server.stop()
        if issuer is not None:
            issuer.stop()


def pass_store(tmp: Path) -> dict[str, str]:
    """The environment of a real `pass` store (for docker-credential-pass) encrypted to a
    throw-away GnuPG key made here; store credentials with ``docker-credential-pass store``."""
    env = dict(os.environ, GNUPGHOME=str(tmp / "gnupg"), PASSWORD_STORE_DIR=str(tmp / "store"))
    (tmp / "gnupg").mkdir(mode=0o700, parents=True)

    def run(*argv: str) -> str:
        return subprocess.run(argv, env=env, check=True, capture_output=True, text=True, timeout=120).stdout

    run("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "ironforge test <pass@test>", "default",
        "default", "never")
    fpr = re.search(r"^fpr:+([0-9A-F]{40}):", run("gpg", "--with-colons", "--list-keys"), re.M).group(1)
    run("pass", "init", fpr)
    return env
