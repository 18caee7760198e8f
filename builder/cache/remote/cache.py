"""What the engine calls, and the fault policy: the registry is an optimisation, never a
dependency, and nothing wrong it serves is used.

- unreachable, slow, 5xx or refusing (credentials): ONE warning, then this process leaves the
  registry alone and builds locally;
- an artifact that fails a check (a blob not matching its digest, a meta for other inputs, a
  name escaping the stage dir): a warning naming the stage; it is not used, the stage is built
  here, and the fresh build replaces the bad tag (read-write);
- a push is blobs first, manifest last, so an interrupted push leaves only unreferenced blobs
  (the registry's own gc removes them) and no tag anyone could pull;
- two machines pushing one key: blobs are addressed by digest, the tag write is one PUT; the
  last manifest wins and both are whole, consistent artifacts of the same inputs.
"""

from __future__ import annotations

import logging
import os
import threading

from builder.cache.remote import layout
from builder.cache.remote.address import RemoteAddress, parse
from builder.cache.remote.credentials import lookup
from builder.cache.remote.registry import Refused, Registry, Unavailable
from builder.cache.store import Store
from builder.errors import RemoteCacheCorrupt, RemoteCacheError
from builder.user_config import UserConfig

log = logging.getLogger("ironforge.remote")

ENV = "IRONFORGE_CACHE_REMOTE"
READONLY_ENV = "IRONFORGE_CACHE_REMOTE_READONLY"


class RemoteCache:
    def __init__(self, address: RemoteAddress, readonly: bool = False, env: dict[str, str] | None = None):
        self.address = address
        self.readonly = readonly
        self._env = dict(os.environ) if env is None else env
        self._local = threading.local()          # one HTTP session per build thread
        self._lock = threading.Lock()
        self.disabled: str | None = None         # why, once tripped
        self._replace: set[str] = set()          # keys whose remote artifact proved bad
        self.pulled: list[str] = []
        self.pushed: list[str] = []

    @classmethod
    def from_options(cls, url: str | None, readonly: bool, env: dict[str, str] | None = None,
                     config: UserConfig | None = None) -> "RemoteCache | None":
        """The remote cache the flags, else the environment, else the machine's configuration
        file (builder/user_config.py) name; None when none does."""
        env = dict(os.environ) if env is None else env
        if url:
            origin = "--cache-remote"
        elif env.get(ENV):
            url, origin = env[ENV], f"${ENV}"
        elif config is not None and config.get("cache.remote"):
            url, origin = config.get("cache.remote"), config.origin("cache.remote")
        else:
            return None
        readonly = (readonly or env.get(READONLY_ENV, "").lower() in ("1", "true", "yes")
                    or bool(config is not None and config.get("cache.remote_readonly")))
        return cls(parse(url, origin), readonly, env)

    def _registry(self) -> Registry:
        reg = getattr(self._local, "registry", None)
        if reg is None:
            reg = Registry(self.address, lookup(self.address.hostport, self._env))
            self._local.registry = reg
        return reg

    def _trip(self, exc: RemoteCacheError) -> None:
        with self._lock:
            if self.disabled is None:
                self.disabled = exc.message
                log.warning("remote cache %s unusable: %s; building locally, not asking it again in this run",
                            self.address, exc.message)

    def _read_only_now(self, exc: RemoteCacheError) -> None:
        # A refused write is an account that may read but not write (a CI pull secret, say):
        # its pulls still work, so only pushing stops; the stage stays built and kept here.
        with self._lock:
            if not self.readonly:
                self.readonly = True
                log.warning("remote cache %s refused a push: %s; pulling only for the rest of this run "
                            "(for a read-only account, say --cache-remote-readonly)", self.address, exc.message)

    def pull(self, store: Store, key: str, stage: str, material: dict) -> dict | None:
        """The stage's meta after landing it from the registry, or None (absent, or unusable:
        the caller builds it). The caller holds the key's stage lock."""
        if self.disabled:
            return None
        try:
            reg = self._registry()
            got = reg.manifest_get(key)
            if got is None:
                log.debug("remote cache: %s (%s) not there", stage, key[:12])
                return None
            meta = layout.land(reg, store, key, stage, material, got[0], f"{self.address}@{layout.sha256_digest(got[0])}")
        except (Unavailable, Refused) as exc:
            self._trip(exc)
            return None
        except RemoteCacheError as exc:
            self._bad(stage, key, exc.message)
            return None
        except OSError as exc:
            self._bad(stage, key, f"{type(exc).__name__}: {exc}")
            return None
        self.pulled.append(key)
        return meta

    def has(self, key: str) -> bool:
        """Whether the registry holds stage ``key`` (one HEAD; for ``plan``, which pulls nothing).
        An unusable registry answers False after the one warning, as a build would."""
        if self.disabled:
            return False
        try:
            return self._registry().manifest_head(key) is not None
        except (Unavailable, Refused, RemoteCacheCorrupt) as exc:
            self._trip(exc)
            return False

    def _bad(self, stage: str, key: str, why: str) -> None:
        with self._lock:
            self._replace.add(key)
        log.warning("remote cache: stage %s (%s) from %s not used: %s; building it here",
                    stage, key[:12], self.address, why)

    def push(self, store: Store, key: str, stage: str, subject: dict | None) -> dict | None:
        """Make sure the registry has stage ``key``; its manifest's descriptor (the next
        stage's subject), or None (read-only, unreachable, not shareable)."""
        if self.disabled or self.readonly:
            return None
        try:
            reg = self._registry()
            if key not in self._replace:
                have = reg.manifest_head(key)
                if have is not None:
                    return have
            desc = layout.push(reg, store, key, stage, subject)
        except layout.NotShareable as exc:
            log.info("remote cache: stage %s (%s) not pushed: %s", stage, key[:12], exc.message)
            return None
        except Refused as exc:
            self._read_only_now(exc)
            return None
        except (Unavailable, RemoteCacheCorrupt) as exc:
            self._trip(exc)
            return None
        with self._lock:
            self._replace.discard(key)
        self.pushed.append(key)
        log.info("remote cache: pushed %s (%s)", stage, key[:12])
        return desc
