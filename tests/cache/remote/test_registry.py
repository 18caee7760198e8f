"""Bearer token authentication against a loopback token service (a small HTTP server of the test's
own standing in for a registry's token endpoint and manifest route: docker-registry's own token
auth needs an external token server, which Debian does not ship)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from builder.cache.remote.address import parse
from builder.cache.remote.credentials import Credentials
from builder.cache.remote.registry import MAX_TOKEN_RESPONSE, Refused, Registry
from builder.errors import RemoteCacheError

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}'


@pytest.fixture
def service():
    seen: dict = {"token_requests": [], "manifest_auth": []}
    state = {"token_body": json.dumps({"token": "t0k3n"}).encode()}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            port = self.server.server_address[1]
            if self.path.startswith("/token"):
                seen["token_requests"].append((self.path, self.headers.get("Authorization")))
                body = state["token_body"]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            auth = self.headers.get("Authorization")
            seen["manifest_auth"].append(auth)
            if auth != "Bearer t0k3n":
                self.send_response(401)
                self.send_header("WWW-Authenticate",
                                 f'Bearer realm="http://127.0.0.1:{port}/token",service="reg"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(len(MANIFEST)))
            self.end_headers()
            self.wfile.write(MANIFEST)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], seen, state
    srv.shutdown()


def test_a_bearer_challenge_gets_a_token_with_the_basic_credentials_and_retries(service):
    port, seen, _ = service
    reg = Registry(parse(f"oci+http://127.0.0.1:{port}/team/stages"), Credentials("ann", "s3cret", "env"))
    data, mtype = reg.manifest_get("k1")
    assert data == MANIFEST and mtype.endswith("manifest.v1+json")
    (path, auth), = seen["token_requests"]
    assert "service=reg" in path and "scope=repository%3Ateam%2Fstages%3Apull%2Cpush" in path
    assert auth.startswith("Basic ") and seen["manifest_auth"] == [None, "Bearer t0k3n"]


def test_an_oversized_token_answer_is_refused_not_read_whole(service):
    port, _, state = service
    state["token_body"] = b'{"token": "' + b"x" * (MAX_TOKEN_RESPONSE + 10) + b'"}'
    reg = Registry(parse(f"oci+http://127.0.0.1:{port}/team/stages"), None)
    with pytest.raises(RemoteCacheError, match="larger than"):
        reg.manifest_get("k1")


def test_credentials_never_go_to_a_plain_http_token_service_of_a_tls_registry(service):
    port, seen, _ = service
    reg = Registry(parse("oci://registry.example.invalid/team/stages"), Credentials("ann", "s3cret", "env"))
    with pytest.raises(Refused, match="without TLS") as exc:
        reg._authenticate(f'Bearer realm="http://127.0.0.1:{port}/token",service="reg"')
    assert "s3cret" not in str(exc.value) and seen["token_requests"] == []
