"""What a pulled artifact must be before it lands: a real registry serves crafted manifests
(written with the same client the product pushes with) and each is refused with a warning
naming the stage, built locally instead, and nothing lands outside the stage's work dir."""

from __future__ import annotations

import io
import json
import logging
import subprocess
from pathlib import Path

import pytest

import engine_fakes as F
from registry_support import registry

from builder.cache.remote import layout
from builder.cache.remote.address import parse
from builder.cache.remote.cache import RemoteCache
from builder.cache.remote.registry import MANIFEST_TYPES, Registry, sha256_digest
from builder.cache.store import Store


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A registry holding one real two-stage build (base, layer)."""
    tmp = tmp_path_factory.mktemp("remote-layout")
    with registry(tmp / "registry") as server:
        eng = F.engine(tmp / "one", tmp / "n1")
        (tmp / "n1").mkdir()
        eng.remote = RemoteCache(parse(server.url()))
        res = eng.run(F.recipe(x=1, y=2), [F.BASE, F.LAYER])
        yield server, res, tmp


def _replace(server, key: str, edit) -> None:
    """Re-tag ``key`` with an edited copy of its manifest (blobs pushed as needed)."""
    reg = Registry(parse(server.url()), None)
    data, _ = reg.manifest_get(key)
    doc = json.loads(data)
    edit(doc, reg)
    reg.manifest_put(key, json.dumps(doc).encode(), MANIFEST_TYPES[0])


def _push_blob(reg: Registry, data: bytes) -> dict:
    digest = sha256_digest(data)
    reg.blob_push(digest, len(data), lambda: io.BytesIO(data))
    return {"digest": digest, "size": len(data)}


def _pull_layer(server, tmp: Path, name: str) -> tuple[list[str], Path, list[str]]:
    handler = Records()
    logger = logging.getLogger("ironforge.remote")
    logger.addHandler(handler)
    try:
        eng = F.engine(tmp / name, tmp / f"n-{name}")
        (tmp / f"n-{name}").mkdir()
        eng.remote = RemoteCache(parse(server.url()), readonly=True)
        res = eng.run(F.recipe(x=1, y=2), [F.BASE, F.LAYER])
    finally:
        logger.removeHandler(handler)
    assert [s.reason for s in res.steps][0] == "pulled"
    return handler.lines, res.artifacts["layer"].image, F.runs(tmp / f"n-{name}")


def _restore(server, res):
    """Put the good manifest back (tests share the module's registry)."""
    layout.push(Registry(parse(server.url()), None), Store(res.artifacts["layer"].dir.parents[1]),
                res.steps[1].key, "layer", None)


def test_a_layer_name_leaving_the_stage_dir_is_refused(pushed):
    server, res, tmp = pushed

    def edit(doc, reg):
        doc["layers"][0]["annotations"]["org.opencontainers.image.title"] = "../../escaped.qcow2"
    _replace(server, res.steps[1].key, edit)
    try:
        warned, image, runs = _pull_layer(server, tmp, "two")
    finally:
        _restore(server, res)
    assert runs == ["layer"] and len(warned) == 1 and "stage layer" in warned[0] and "relative path" in warned[0]
    assert not list(tmp.rglob("escaped.qcow2"))


def test_a_qcow2_naming_a_backing_file_its_annotations_do_not_is_refused(pushed, tmp_path):
    server, res, tmp = pushed
    evil = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", str(evil), "1M"],
                   check=True)

    def edit(doc, reg):
        ann = doc["layers"][0]["annotations"]
        for k in list(ann):
            if k.startswith("org.ironforge.backing."):
                del ann[k]
        doc["layers"][0].update(_push_blob(reg, evil.read_bytes()))
    _replace(server, res.steps[1].key, edit)
    try:
        warned, image, runs = _pull_layer(server, tmp, "three")
    finally:
        _restore(server, res)
    assert runs == ["layer"] and len(warned) == 1 and "backing file does not match" in warned[0]


def test_a_meta_for_other_inputs_is_refused(pushed):
    server, res, tmp = pushed

    def edit(doc, reg):
        meta = json.loads((res.artifacts["layer"].dir / "meta.json").read_text())
        meta["material"]["reads"] = {"y": 999}
        doc["config"].update(_push_blob(reg, json.dumps(meta).encode()))
    _replace(server, res.steps[1].key, edit)
    try:
        warned, image, runs = _pull_layer(server, tmp, "four")
    finally:
        _restore(server, res)
    assert runs == ["layer"] and len(warned) == 1 and "not for this stage, key and inputs" in warned[0]


def test_the_good_artifact_still_pulls(pushed):
    server, res, tmp = pushed
    warned, image, runs = _pull_layer(server, tmp, "five")
    assert runs == [] and warned == []
