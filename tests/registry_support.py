"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8) on loopback,
with its own config file, a temporary storage folder and a free port; stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

with warnings.catch_warnings():     # deprecated in 3.11, and the one bcrypt maker at hand here
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

BINARY = "docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RegistryServer:
    root: Path
    port: int
    htpasswd: Path | None = None
    proc: subprocess.Popen | None = None

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
def registry(tmp: Path, *, user: str | None = None, password: str | None = None) -> Iterator[RegistryServer]:
    if shutil.which(BINARY) is None:
        raise RuntimeError(f"{BINARY} is not installed (make setup installs the docker-registry package)")
    tmp.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(tmp / "htpasswd", user, password) if user else None
    server = RegistryServer(tmp, free_port(), htpasswd).start()
    try:
        yield server
    finally:
        server.stop()


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
