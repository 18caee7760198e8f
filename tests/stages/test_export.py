"""export stage and publish, on real qcow2 chains made with qemu-img/qemu-io (no guest needed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder import qemu_img
from builder.cache.store import Store
from builder.engine import Engine
from builder.host.accel import Accel
from builder.publish import publish
from builder.recipe import Recipe
from builder.stage import Output, StageDef
from builder.stages import export


def _base_stage(ctx, inputs):
    img = ctx.workdir / "image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0xab 0 4M", str(img)], check=True, capture_output=True)
    return Output(files={"image": "image.qcow2"})


def _layer_stage(ctx, inputs):
    img = qemu_img.overlay(inputs["previous"].image, ctx.workdir / "image.qcow2")
    # the overlay changes 1 MiB and discards (zeroes) another: the flattened image must show both
    subprocess.run(["qemu-io", "-c", "write -P 0xcd 8M 1M", "-c", "write -z 0 1M", str(img)], check=True,
                   capture_output=True)
    return Output(files={"image": "image.qcow2"}, data={"packages": [{"name": "busybox", "version": "1", "arch": "amd64"}]})


BASE = StageDef("base", 1, (), _base_stage, tools=("qemu-img",))
DRIVERS = StageDef("drivers", 1, (), _layer_stage)


def _recipe(formats):
    return Recipe(name="tiny", path=None, values={
        "arch": "amd64", "os": {"family": "debian", "release": "12"},
        "outputs": {"formats": formats, "compress": True}})


@pytest.fixture
def built(tmp_path):
    eng = Engine(store=Store(tmp_path / "cache"), accel=Accel("tcg", "test"))
    return eng, eng.run(_recipe(["qcow2", "raw", "vmdk"]), [BASE, DRIVERS, export.STAGE])


def test_export_flattens_every_format(built, tmp_path):
    _eng, result = built
    art = result.artifacts["export"]
    for fmt, qfmt in (("qcow2", "qcow2"), ("raw", "raw"), ("vmdk", "vmdk")):
        info = qemu_img.info(art.path(fmt))
        assert info["format"] == qfmt
        assert info["virtual-size"] == 64 << 20
        assert "backing-filename" not in info  # flattened: no chain left
        assert art.data[fmt]["sha256"] == export.sha256_file(art.path(fmt))
    assert qemu_img.info(art.path("vmdk"))["format-specific"]["data"]["create-type"] == "streamOptimized"
    raw = art.path("raw").read_bytes()
    assert raw[:1 << 20] == b"\0" * (1 << 20)           # discarded in the overlay
    assert raw[1 << 20:4 << 20] == b"\xab" * (3 << 20)  # from the base layer
    assert raw[8 << 20:9 << 20] == b"\xcd" * (1 << 20)  # from the overlay


def test_publish_is_atomic_and_complete(built, tmp_path):
    eng, result = built
    out = publish(result, tmp_path / "output", eng.accel, None)
    assert out == tmp_path / "output" / "tiny"
    assert out.stat().st_mode & 0o777 == 0o755
    names = sorted(p.name for p in out.iterdir())
    assert names == ["SHA256SUMS", "manifest.json", "packages.txt", "sbom.spdx.json", "tiny.qcow2", "tiny.raw",
                     "tiny.vmdk"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["recipe"]["name"] == "tiny"
    assert [s["name"] for s in m["stages"]] == ["base", "drivers", "export"]
    assert m["image"]["qcow2"]["sha256"] == export.sha256_file(out / "tiny.qcow2")
    assert m["verification"] == {"status": "skipped"}
    assert m["accel"]["mode"] == "tcg"
    assert "qemu-img" in m["tools"]
    assert (out / "packages.txt").read_text() == "busybox\t1\tamd64\n"
    # republish replaces the whole directory; nothing temporary is left behind
    publish(result, tmp_path / "output", eng.accel, {"passed": True})
    assert json.loads((out / "manifest.json").read_text())["verification"] == {"passed": True}
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["tiny"]


def test_failed_publish_keeps_previous_output(built, tmp_path):
    eng, result = built
    out = publish(result, tmp_path / "output", eng.accel, None)
    before = (out / "manifest.json").read_text()
    broken = type(result)(result.recipe, dict(result.artifacts), result.steps)
    broken.artifacts["export"] = type(result.artifacts["export"])(
        "export", "x", tmp_path / "nowhere", {"qcow2": "image.qcow2", "image": "image.qcow2"},
        {"published_formats": ["qcow2"]})
    with pytest.raises(OSError):
        publish(broken, tmp_path / "output", eng.accel, None)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["tiny"]


def test_second_run_hits_and_export_reruns_on_format_change(tmp_path):
    eng = Engine(store=Store(tmp_path / "cache"), accel=Accel("tcg", "test"))
    eng.run(_recipe(["qcow2"]), [BASE, DRIVERS, export.STAGE])
    r = eng.run(_recipe(["qcow2"]), [BASE, DRIVERS, export.STAGE])
    assert all(s.hit for s in r.steps)
    r = eng.run(_recipe(["qcow2", "raw"]), [BASE, DRIVERS, export.STAGE])
    assert [s.hit for s in r.steps] == [True, True, False]
    assert r.steps[2].reason == "outputs.formats changed"
    assert Path(r.artifacts["export"].path("raw")).exists()


def _parts(step) -> dict:
    return {p.name: (p.hit, p.reason) for p in step.parts}


def test_adding_a_format_writes_only_that_format(tmp_path):
    """Each format is a cache entry of its own, keyed on the input image and its own options: the
    plan says which formats will be written and why, and the run writes exactly those."""
    eng = Engine(store=Store(tmp_path / "cache"), accel=Accel("tcg", "test"))
    stages = [BASE, DRIVERS, export.STAGE]
    first = eng.run(_recipe(["qcow2", "vmdk"]), stages)
    assert _parts(first.steps[2]) == {"export[qcow2]": (False, "never built"), "export[vmdk]": (False, "never built")}
    vmdk_inode = first.artifacts["export"].path("vmdk").stat().st_ino

    recipe = _recipe(["qcow2", "vmdk", "vdi"])
    plan = eng.plan(recipe, stages)
    assert (plan[2].hit, plan[2].reason) == (False, "outputs.formats changed")
    assert {p.name: (p.hit, p.reason) for p in plan[2].parts} == {
        "export[qcow2]": (True, "cached"), "export[vmdk]": (True, "cached"), "export[vdi]": (False, "never built")}
    r = eng.run(recipe, stages)
    assert _parts(r.steps[2]) == {"export[qcow2]": (True, "cached"), "export[vmdk]": (True, "cached"),
                                  "export[vdi]": (False, "never built")}
    art = r.artifacts["export"]
    # the unchanged formats are the very files written before (linked from their entries)
    assert art.path("vmdk").stat().st_ino == vmdk_inode
    assert qemu_img.info(art.path("vdi"))["format"] == "vdi"
    assert {p.key for p in plan[2].parts} == {p.key for p in r.steps[2].parts}

    # a format's own option re-writes that format alone; the VM shape only what describes a VM
    recipe = _recipe(["qcow2", "vmdk", "vdi", "ova"])
    recipe.values["outputs"]["compress"] = False
    r = eng.run(recipe, stages)
    assert _parts(r.steps[2]) == {"export[qcow2]": (False, "compress changed, compression changed"), "export[vmdk]": (True, "cached"),
                                  "export[vdi]": (True, "cached"), "export[ova]": (False, "never built")}
    recipe.values["verify"] = {"memory": 2048}
    r = eng.run(recipe, stages)
    assert _parts(r.steps[2]) == {"export[qcow2]": (True, "cached"), "export[vmdk]": (True, "cached"),
                                  "export[vdi]": (True, "cached"), "export[ova]": (False, "machine.memory_mib changed")}
    # the codec is the qcow2's own option too (zlib for readers older than QEMU 5.1); back to
    # compressed: the zstd file made first is still cached
    recipe.values["outputs"]["compress"] = True
    r = eng.run(recipe, stages)
    assert _parts(r.steps[2])["export[qcow2]"] == (True, "cached")
    assert qemu_img.info(r.artifacts["export"].path("qcow2"))["format-specific"]["data"]["compression-type"] == "zstd"
    recipe.values["outputs"]["compression"] = "zlib"
    r = eng.run(recipe, stages)
    assert _parts(r.steps[2]) == {"export[qcow2]": (False, "compression changed"), "export[vmdk]": (True, "cached"),
                                  "export[vdi]": (True, "cached"), "export[ova]": (True, "cached")}
    assert qemu_img.info(r.artifacts["export"].path("qcow2"))["format-specific"]["data"]["compression-type"] == "zlib"
    # a second identical run touches nothing, and says which parts the cached export holds
    again = eng.run(recipe, stages)
    assert [s.hit for s in again.steps] == [True, True, True]
    assert {p.name for p in again.steps[2].parts} == {"export[qcow2]", "export[vmdk]", "export[vdi]", "export[ova]"}


def test_recipe_formats_publish_with_domain_xml_sums_and_sbom(tmp_path):
    """outputs.formats with the platform formats: each is a file of the export artifact; publish
    writes the libvirt XML naming the published qcow2, an SBOM of the same packages as
    packages.txt, and SHA256SUMS over everything."""
    eng = Engine(store=Store(tmp_path / "cache"), accel=Accel("tcg", "test"))
    recipe = _recipe(["ova", "vhd-azure", "libvirt"])
    recipe.values["verify"] = {"memory": 768, "cpus": 3}
    recipe.values["firmware"] = "uefi"
    result = eng.run(recipe, [BASE, DRIVERS, export.STAGE])
    art = result.artifacts["export"]
    assert art.data["machine"]["memory_mib"] == 768 and art.data["machine"]["vcpus"] == 3
    assert qemu_img.info(art.path("vhd-azure"), fmt="vpc")["virtual-size"] == 64 << 20
    out = publish(result, tmp_path / "output", eng.accel, None)
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS", "manifest.json", "packages.txt", "sbom.spdx.json", "tiny.ova", "tiny.qcow2", "tiny.vhd",
        "tiny.xml"]
    xml = (out / "tiny.xml").read_text()
    assert f"<source file=\"{out.resolve() / 'tiny.qcow2'}\"" in xml
    assert '<os firmware="efi">' in xml and '<vcpu placement="static">3</vcpu>' in xml
    subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=out, check=True)
    doc = json.loads((out / "sbom.spdx.json").read_text())
    listed = sorted((p["name"], p["versionInfo"]) for p in doc["packages"] if p["SPDXID"] != "SPDXRef-Image")
    from_txt = sorted(tuple(line.split("\t")[:2]) for line in (out / "packages.txt").read_text().splitlines())
    assert listed == from_txt == [("busybox", "1")]
    # a format change re-runs export only; the machine shape is part of its key
    recipe.values["verify"] = {"memory": 1024, "cpus": 3}
    r = eng.run(recipe, [BASE, DRIVERS, export.STAGE])
    assert [s.hit for s in r.steps] == [True, True, False]


def _huge_base(ctx, inputs):
    img = ctx.workdir / "image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "2041G"], check=True)
    return Output(files={"image": "image.qcow2"})


def test_a_format_that_cannot_hold_the_image_is_a_usage_error(tmp_path):
    from builder.errors import UsageError
    eng = Engine(store=Store(tmp_path / "cache"), accel=Accel("tcg", "test"))
    with pytest.raises(UsageError, match="vhd-azure") as exc:
        eng.run(_recipe(["qcow2", "vhd-azure"]), [StageDef("base", 1, (), _huge_base, tools=("qemu-img",)),
                                                  export.STAGE])
    assert exc.value.exit_code == 2
    # every format is checked against the real size before any is written: no qcow2 entry either
    assert [m.get("stage") for m in (eng.store.read_meta(d.name) for d in (tmp_path / "cache" / "stages").iterdir()
                                     if d.name != "tmp")] == ["base"]


def test_manifest_lists_formats_and_the_machine_apart(tmp_path):
    eng = Engine(store=Store(tmp_path / "cache"), accel=Accel("tcg", "test"))
    result = eng.run(_recipe(["qcow2", "vdi"]), [BASE, DRIVERS, export.STAGE])
    out = publish(result, tmp_path / "output", eng.accel, None)
    m = json.loads((out / "manifest.json").read_text())
    assert sorted(m["image"]) == ["qcow2", "vdi"]
    assert m["machine"]["memory_mib"] == 1024 and m["machine"]["firmware"] == "bios"
    # each entry names the file as published, with its digest (verify's provenance finds it so)
    for fmt, d in m["image"].items():
        assert (out / d["file"]).is_file() and d["file"].startswith(result.recipe.name + ".")
        assert d["sha256"] == export.sha256_file(out / d["file"])
    from builder.runner.provenance import beside
    prov = beside(out / m["image"]["qcow2"]["file"])
    assert prov["image_sha256"] == m["image"]["qcow2"]["sha256"] and prov["cache_keys"]["export"]


def test_published_formats_entries_survive_cache_gc(tmp_path):
    """The manifest names each format's entry, so gc keeps them with the output: a format added
    long after the build still writes that format alone."""
    from builder.cache.gc import gc
    eng = Engine(store=Store(tmp_path / "cache"), accel=Accel("tcg", "test"))
    stages = [BASE, DRIVERS, export.STAGE]
    result = eng.run(_recipe(["qcow2", "raw"]), stages)
    out = publish(result, tmp_path / "output", eng.accel, None)
    listed = json.loads((out / "manifest.json").read_text())["stages"][2]["parts"]
    assert [(p["name"], p["key"]) for p in listed] == [(p.name, p.key) for p in result.steps[2].parts]
    gc(eng.store, tmp_path / "output", keep_days=0, now=__import__("time").time() + 86400)
    assert all(eng.store.read_meta(p["key"]) is not None for p in listed)
    r = eng.run(_recipe(["qcow2", "raw", "vhdx"]), stages)
    assert [p.hit for p in r.steps[2].parts] == [True, True, False]
