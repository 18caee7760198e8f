"""A stage directory <-> an OCI artifact, and landing a pulled artifact in the local store.

Manifest of one stage (tag = the stage's cache key):

- ``config``: the stage's ``meta.json``, media type ``META_TYPE``;
- ``layers``: its files, each with its name (``org.opencontainers.image.title``) and mode; a
  qcow2 layer also names its backing file as (stage key, file name, format), never as a path:
  paths are local to the machine that built it;
- ``subject``: the previous stage's manifest (the chain is browsable in the registry).

A pulled artifact is untrusted until checked: every blob must hash to its digest, names must
stay inside the stage directory, its meta must be for exactly this key and material, a qcow2
file may name no backing file but the one its annotations say (re-pointed here with
``qemu-img rebase -u`` at the local copy of that stage) and no external data file. It is
written into a fresh work dir and committed by ``Store.commit_stage``, the same path a local
build takes (files read-only, meta last, one rename), so a reader sees all of it or nothing.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder import qemu_img
from builder.cache.backing import QCOW2_MAGIC, backing_name
from builder.cache.remote.registry import MANIFEST_TYPES, Registry, check_digest, sha256_digest
from builder.cache.store import META, Store, sha256_file
from builder.errors import RemoteCacheCorrupt, RemoteCacheError

ARTIFACT_TYPE = "application/vnd.ironforge.stage.v1"
META_TYPE = "application/vnd.ironforge.stage.meta.v1+json"
FILE_TYPE = "application/vnd.ironforge.stage.file.v1"
TITLE = "org.opencontainers.image.title"
MODE = "org.ironforge.file.mode"
BACKING_KEY = "org.ironforge.backing.key"
BACKING_FILE = "org.ironforge.backing.file"
BACKING_FORMAT = "org.ironforge.backing.format"
SYMLINKS = "org.ironforge.symlinks"
KEY = "org.ironforge.key"
STAGE = "org.ironforge.stage"
MAX_LAYERS = 1000
MAX_META = 16 << 20
_FEATURE_DATA_FILE = 1 << 2          # qcow2 incompatible feature: an external data file


class NotShareable(RemoteCacheError):
    """A local stage that must not or cannot go to a registry (private files, a backing file
    outside the store)."""


@dataclass(frozen=True)
class LocalFile:
    name: str
    path: Path
    mode: int
    digest: str
    size: int
    backing: tuple[str, str, str] | None      # (stage key, file name, format)


# -- push side ---------------------------------------------------------------------------------

def _backing_ref(store: Store, path: Path) -> tuple[str, str, str] | None:
    name = backing_name(path)
    if name is None:
        return None
    target = Path(os.path.realpath(name if os.path.isabs(name) else path.parent / name))
    stages = Path(os.path.realpath(store.root / "stages"))
    try:
        rel = target.relative_to(stages)
    except ValueError:
        raise NotShareable(f"{path.name} is backed by {target}, outside the cache") from None
    if len(rel.parts) < 2 or rel.parts[0] == "tmp":
        raise NotShareable(f"{path.name} is backed by {target}, not a committed stage")
    fmt = qemu_img.info(path, f"remote cache: {path.name}", fmt="qcow2").get("backing-filename-format") or "raw"
    return rel.parts[0], PurePosixPath(*rel.parts[1:]).as_posix(), fmt


def describe(store: Store, key: str) -> tuple[bytes, list[LocalFile], dict[str, str]]:
    """(meta.json bytes, the files, the symlinks name -> target) of a committed stage."""
    d = store.stage_dir(key)
    meta = (d / META).read_bytes()
    files: list[LocalFile] = []
    links: dict[str, str] = {}
    for dirpath, dirs, names in os.walk(d):
        dirs.sort()
        for n in sorted(names):
            p = Path(dirpath) / n
            rel = p.relative_to(d).as_posix()
            if rel == META:
                continue
            if p.is_symlink():
                links[rel] = os.readlink(p)
                continue
            st = p.stat()
            if not st.st_mode & 0o044:
                raise NotShareable(f"{rel} is private (mode {st.st_mode & 0o777:o})")
            files.append(LocalFile(rel, p, st.st_mode & 0o777, "sha256:" + sha256_file(p), st.st_size,
                                   _backing_ref(store, p)))
    return meta, files, links


def manifest(key: str, stage: str, meta: bytes, files: list[LocalFile], links: dict[str, str],
             subject: dict | None) -> bytes:
    layers = []
    for f in files:
        ann = {TITLE: f.name, MODE: f"{f.mode:o}"}
        if f.backing:
            ann.update({BACKING_KEY: f.backing[0], BACKING_FILE: f.backing[1], BACKING_FORMAT: f.backing[2]})
        layers.append({"mediaType": FILE_TYPE, "digest": f.digest, "size": f.size, "annotations": ann})
    doc = {"schemaVersion": 2, "mediaType": MANIFEST_TYPES[0], "artifactType": ARTIFACT_TYPE,
           "config": {"mediaType": META_TYPE, "digest": sha256_digest(meta), "size": len(meta)},
           "layers": layers, "annotations": {KEY: key, STAGE: stage}}
    if links:
        doc["annotations"][SYMLINKS] = json.dumps(links, sort_keys=True)
    if subject:
        doc["subject"] = {k: subject[k] for k in ("mediaType", "digest", "size")}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def push(registry: Registry, store: Store, key: str, stage: str, subject: dict | None) -> dict:
    """Blobs first, the manifest (the tag) last: until the tag exists, nobody pulls."""
    meta, files, links = describe(store, key)
    registry.blob_push(sha256_digest(meta), len(meta), lambda: io.BytesIO(meta))
    for f in files:
        registry.blob_push(f.digest, f.size, lambda p=f.path: open(p, "rb"))
    data = manifest(key, stage, meta, files, links, subject)
    digest = registry.manifest_put(key, data, MANIFEST_TYPES[0])
    return {"mediaType": MANIFEST_TYPES[0], "digest": digest, "size": len(data)}


# -- pull side ---------------------------------------------------------------------------------

def _safe_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 1024 or "\x00" in name or "\\" in name:
        raise RemoteCacheCorrupt(f"layer name {str(name)[:80]!r} is not a plain relative path")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or any(p in (".", "..") for p in parts) or name != PurePosixPath(*parts).as_posix() \
            or name == META or any(len(p) > 255 for p in parts):
        raise RemoteCacheCorrupt(f"layer name {name[:80]!r} is not a plain relative path")
    return name


@dataclass(frozen=True)
class Layer:
    name: str
    digest: str
    size: int
    mode: int
    backing: tuple[str, str, str] | None


def parse(data: bytes, key: str) -> tuple[dict, list[Layer], dict[str, str]]:
    """(config descriptor, layers, symlinks) of a manifest, every field checked."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise RemoteCacheCorrupt("manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("artifactType") != ARTIFACT_TYPE:
        raise RemoteCacheCorrupt("manifest is not an ironforge stage")
    cfg = doc.get("config")
    if not isinstance(cfg, dict) or cfg.get("mediaType") != META_TYPE:
        raise RemoteCacheCorrupt("manifest config is not a stage meta.json")
    ann = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {}
    if ann.get(KEY) != key:
        raise RemoteCacheCorrupt("manifest is for another key")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list) or len(raw_layers) > MAX_LAYERS:
        raise RemoteCacheCorrupt("manifest layers are not a list of files")
    layers: list[Layer] = []
    seen: set[str] = set()
    for item in raw_layers:
        a = item.get("annotations") if isinstance(item, dict) else None
        if not isinstance(a, dict) or not isinstance(item.get("size"), int) or item["size"] < 0:
            raise RemoteCacheCorrupt("a layer lacks its name or size")
        name = _safe_name(a.get(TITLE))
        if name in seen:
            raise RemoteCacheCorrupt(f"layer {name!r} twice")
        seen.add(name)
        try:
            mode = int(str(a.get(MODE, "444")), 8) & 0o755
        except ValueError:
            raise RemoteCacheCorrupt(f"layer {name!r}: bad mode") from None
        backing = None
        if BACKING_KEY in a:
            bkey, bfile, bfmt = a.get(BACKING_KEY), a.get(BACKING_FILE), a.get(BACKING_FORMAT)
            if not (isinstance(bkey, str) and len(bkey) == 64 and all(c in "0123456789abcdef" for c in bkey)) \
                    or bfmt not in ("qcow2", "raw"):
                raise RemoteCacheCorrupt(f"layer {name!r}: bad backing reference")
            backing = (bkey, _safe_name(bfile), bfmt)
        layers.append(Layer(name, check_digest(item.get("digest")), item["size"], mode, backing))
    links: dict[str, str] = {}
    if SYMLINKS in ann:
        try:
            links = json.loads(ann[SYMLINKS])
        except (TypeError, ValueError):
            raise RemoteCacheCorrupt("bad symlink list") from None
        if not isinstance(links, dict):
            raise RemoteCacheCorrupt("bad symlink list")
        for name, target in links.items():
            _safe_name(name)
            where = os.path.normpath(os.path.join(os.path.dirname(name), str(target)))
            if name in seen or not isinstance(target, str) or target.startswith("/") \
                    or where.split("/")[0] in ("..", ".") or where not in names_of(layers):
                raise RemoteCacheCorrupt(f"symlink {name!r} points outside the stage's files")
    return {"digest": check_digest(cfg.get("digest")), "size": int(cfg.get("size", -1))}, layers, links


def names_of(layers: list[Layer]) -> set[str]:
    return {layer.name for layer in layers}


def _qcow2_backing(path: Path) -> tuple[bool, str | None, bool]:
    """(is qcow2, backing name, has an external data file), from the header alone."""
    with open(path, "rb") as f:
        head = f.read(80)
    if head[:4] != QCOW2_MAGIC:
        return False, None, False
    version = struct.unpack(">I", head[4:8])[0]
    features = struct.unpack(">Q", head[72:80])[0] if version >= 3 and len(head) >= 80 else 0
    return True, backing_name(path), bool(features & _FEATURE_DATA_FILE)


def land(registry: Registry, store: Store, key: str, stage: str, material: dict,
         data: bytes, source: str) -> dict:
    """Pull the artifact ``data`` (its manifest) describes into the store under ``key``; the
    caller holds the key's stage lock. Returns the committed meta."""
    cfg, layers, links = parse(data, key)
    if not 0 <= cfg["size"] <= MAX_META:
        raise RemoteCacheCorrupt("meta.json has an unreasonable size")
    buf = io.BytesIO()
    registry.blob_pull(cfg["digest"], cfg["size"], buf)
    try:
        meta = json.loads(buf.getvalue())
    except ValueError:
        raise RemoteCacheCorrupt("meta.json is not JSON") from None
    if not isinstance(meta, dict) or meta.get("key") != key or meta.get("stage") != stage \
            or meta.get("material") != json.loads(json.dumps(material, default=str)):
        raise RemoteCacheCorrupt("meta.json is not for this stage, key and inputs")
    files = meta.get("files")
    names = {layer.name for layer in layers} | set(links)
    if not isinstance(files, dict) or not set(files.values()) <= names:
        raise RemoteCacheCorrupt("meta.json names files the artifact lacks")
    for layer in layers:
        if layer.backing and store.read_meta(layer.backing[0]) is None:
            raise RemoteCacheError(f"{layer.name} is backed by stage {layer.backing[0][:12]}, "
                                   "which this machine lacks")
    work = store.new_stage_workdir(key)
    try:
        for layer in layers:
            dst = work / layer.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(dst, "xb") as f:
                registry.blob_pull(layer.digest, layer.size, f)
            is_qcow2, backing, data_file = _qcow2_backing(dst)
            if data_file:
                raise RemoteCacheCorrupt(f"{layer.name} names an external data file")
            if (backing is not None) != (layer.backing is not None) or (layer.backing and not is_qcow2):
                raise RemoteCacheCorrupt(f"{layer.name}: its backing file does not match its annotations")
            if layer.backing:
                bkey, bfile, bfmt = layer.backing
                parent = (store.stage_dir(bkey) / bfile).resolve()
                if not parent.is_file():
                    raise RemoteCacheError(f"{layer.name} is backed by {bkey[:12]}/{bfile}, missing here")
                qemu_img.run(["rebase", "-u", "-f", "qcow2", "-F", bfmt, "-b", str(parent), str(dst)],
                             f"remote cache: re-point {stage}/{layer.name}")
            os.chmod(dst, layer.mode)
        for name, target in links.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, work / name)
        meta = {k: v for k, v in meta.items() if k not in ("key", "complete")}
        meta["pulled_from"] = source
        store.commit_stage(key, work, meta)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    got = store.read_meta(key)
    if got is None:  # pragma: no cover - commit_stage just wrote it
        raise RemoteCacheError("the pulled stage did not commit")
    return got
