"""On-disk store: ``downloads/sha256/<hex>`` and ``stages/<key>/{files…, meta.json}``.

Everything is written under a temporary name in the same filesystem, fsynced, then renamed.
A stage directory without a complete ``meta.json`` does not exist as far as readers go, so a
build killed at any point leaves nothing a later run would trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator
from builder.host.proc import pid_alive

META = "meta.json"


def default_root(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("IRONFORGE_CACHE"):
        return Path(env["IRONFORGE_CACHE"])
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ironforge"


def sha256_file(path: Path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file under ``path`` and the directories themselves."""
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)   # mkstemp's 0600 belongs to the temporary name, not to the file
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (fcntl.flock) held for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass(frozen=True)
class Store:
    root: Path

    # -- downloads ---------------------------------------------------------------------
    def download_path(self, sha256_hex: str) -> Path:
        return self.root / "downloads" / "sha256" / sha256_hex.lower()

    def adopt_download(self, tmp: Path, sha256_hex: str) -> Path:
        """Move a fully written, digest-checked file into ``downloads/sha256/<hex>``. Store files are
        read-only: they are hard-linked into artifacts, so nobody may edit one in place."""
        final = self.download_path(sha256_hex)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return final

    def ingest(self, src: BinaryIO, sha256_hex: str, *, what: str, hint: str) -> Path:
        """Copy a readable stream into the store, hashing as it goes; the bytes must have
        ``sha256_hex`` (else ChecksumError with ``hint``, and nothing stays behind)."""
        from builder.errors import ChecksumError
        tmp = self.download_tmpdir() / f"ingest-{sha256_hex[:16]}.{os.getpid()}.{threading.get_ident()}.tmp"
        h = hashlib.sha256()
        try:
            with open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    h.update(block)
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
            if h.hexdigest() != sha256_hex:
                raise ChecksumError(what, "sha256", sha256_hex, h.hexdigest(), hint=hint)
            return self.adopt_download(tmp, sha256_hex)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def download_tmpdir(self) -> Path:
        d = self.root / "downloads" / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def download_lock(self, name: str):
        return file_lock(self.root / "locks" / f"download-{name}.lock")

    # -- stages --------------------------------------------------------------------------
    def stage_dir(self, key: str) -> Path:
        return self.root / "stages" / key

    def stage_lock(self, key: str):
        return file_lock(self.root / "locks" / f"stage-{key}.lock")

    def read_meta(self, key: str) -> dict | None:
        """The stage's meta.json, or None when the stage is absent or incomplete."""
        meta = self.stage_dir(key) / META
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("complete") is not True or data.get("key") != key:
            return None
        for name in data.get("files", {}).values():
            if not (self.stage_dir(key) / name).exists():
                return None
        return data

    def new_stage_workdir(self, key: str) -> Path:
        """A fresh work dir; its name carries our pid so leftovers of dead runs can be told apart."""
        tmp = self.root / "stages" / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{key[:16]}.{os.getpid()}.", dir=tmp))

    def remove_dead_workdirs(self) -> int:
        """Delete work dirs left by processes that no longer run (a killed build). Safe while
        other builds run: a live pid's dirs are kept."""
        tmp = self.root / "stages" / "tmp"
        removed = 0
        if not tmp.is_dir():
            return 0
        for d in tmp.iterdir():
            parts = d.name.split(".")
            if len(parts) < 3 or not parts[1].isdigit():
                continue
            if not pid_alive(int(parts[1])):
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        return removed

    def commit_stage(self, key: str, workdir: Path, meta: dict) -> Path:
        """Check the named outputs, make every file read-only, fsync, write meta.json last,
        then rename the work dir into place."""
        from builder.cache.seal import check_outputs, make_read_only
        check_outputs(workdir, meta.get("files", {}), meta.get("stage", "?"))
        meta = dict(meta, key=key, complete=True)
        atomic_write_text(workdir / META, json.dumps(meta, indent=2, sort_keys=True))
        make_read_only(workdir)
        fsync_tree(workdir)
        final = self.stage_dir(key)
        if final.exists():
            # An incomplete entry (killed run, torn meta): never trusted, but move it aside
            # rather than delete it under a reader; our pid in its name lets the sweep of dead
            # runs' work dirs remove it if we die first.
            stale = self.root / "stages" / "tmp" / f"{key[:16]}.{os.getpid()}.stale-{os.urandom(4).hex()}"
            os.rename(final, stale)
            os.rename(workdir, final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.rename(workdir, final)
        fsync_dir(final.parent)
        return final

    # -- what the engine remembers between runs, to explain a miss ---------------------
    def last_material(self, recipe: str, stage: str) -> dict | None:
        try:
            return json.loads((self.root / "index" / recipe / f"{stage}.json").read_text())
        except (OSError, ValueError):
            return None

    def remember_material(self, recipe: str, stage: str, material: dict) -> None:
        atomic_write_text(self.root / "index" / recipe / f"{stage}.json",
                          json.dumps(material, indent=1, sort_keys=True, default=str))


