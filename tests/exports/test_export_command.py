"""`ironforge export` (builder.exports.command): bad requests exit 2 naming the format and write
nothing; an untrusted image is probed first; a published packages.txt feeds the SBOM."""

from __future__ import annotations

import json
import subprocess

from exports_support import cli, make_source


def test_unknown_format_exits_2_and_names_it(tmp_path):
    src = make_source(tmp_path / "src.qcow2", 8 << 20)
    res = cli("export", str(src), "--format", "qcow2,vmdkk", "--output-dir", str(tmp_path / "out"), check=False)
    assert res.returncode == 2
    assert "vmdkk" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_disk_too_big_for_vhd_exits_2_and_names_the_format(tmp_path):
    src = tmp_path / "huge.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src), "2041G"], check=True)
    res = cli("export", str(src), "--format", "vhd-azure", "--output-dir", str(tmp_path / "out"), check=False)
    assert res.returncode == 2
    assert "vhd-azure" in res.stderr and "2040 GiB" in res.stderr
    # vhdx holds it: the refusal is about the format, not the image (checked without writing 2 TiB)
    from builder import exports
    assert exports.check("vhdx", 2041 << 30).name == "vhdx"


def test_image_with_backing_file_is_refused(tmp_path):
    base = make_source(tmp_path / "base.qcow2", 8 << 20)
    top = tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(top)], check=True)
    res = cli("export", str(top), "--format", "raw", "--output-dir", str(tmp_path / "out"), check=False)
    assert res.returncode == 1 and "backing file" in res.stderr
    assert not (tmp_path / "out" / "top").exists()


def test_raw_source_packages_beside_and_atomic_replace(tmp_path):
    pub = tmp_path / "published"
    pub.mkdir()
    raw = pub / "img.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(make_source(tmp_path / "s.qcow2", 8 << 20)), str(raw)],
                   check=True)
    (pub / "packages.txt").write_text("bash\t5.2.15-2+b2\tamd64\nzlib1g\t1:1.2.13.dfsg-1\tamd64\n")
    out = tmp_path / "out"
    res = json.loads(cli("export", str(raw), "-f", "vdi", "--output-dir", str(out), "--json").stdout)
    assert res["source"]["format"] == "raw" and res["name"] == "img"
    doc = json.loads((out / "img" / "sbom.spdx.json").read_text())
    assert sorted(p["name"] for p in doc["packages"]) == ["bash", "img", "zlib1g"]
    subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "vdi", str(raw), str(out / "img" / "img.vdi")],
                   check=True, capture_output=True)
    # a second export replaces the whole directory: the old format's file is gone, nothing half-made is left
    cli("export", str(raw), "-f", "vhdx", "--output-dir", str(out))
    assert sorted(p.name for p in (out / "img").iterdir()) == ["SHA256SUMS", "img.vhdx", "sbom.spdx.json"]
    assert sorted(p.name for p in out.iterdir()) == ["img"]
