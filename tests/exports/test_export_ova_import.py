"""The full OVA proof: virt-v2v imports our OVA of a real Debian guest (``-i ova … -o local``), and
``ironforge verify`` boots what virt-v2v wrote. The fast check (``--print-source``) is in
test_export_ova.py; this one converts the guest, so it is slow (about 20-30 minutes under TCG)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from exports_support import ROOT
from linux_bootstrap_support import build

from builder.host.accel import choose

pytestmark = [pytest.mark.slow, pytest.mark.boot, pytest.mark.network]


def _cli(*args, tmp, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "IRONFORGE_CACHE": str(tmp / "cache"), "IRONFORGE_OUTPUT": str(tmp / "out")}
    return subprocess.run([sys.executable, "-m", "builder.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(7200)
def test_virt_v2v_imports_our_ova_and_ironforge_boots_the_result(tmp_path):
    # the smallest real guest: Debian 12 amd64 after its drivers stage (kernel, GRUB, initramfs
    # with virtio), flattened, because `ironforge export` refuses images with backing files
    drivers = build("debian-12-amd64").artifacts["drivers"].image
    flat = tmp_path / "deb12.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "qcow2", str(drivers), str(flat)], check=True)
    r = _cli("export", flat, "--name", "deb12", "--format", "ova", "--memory", "1024", "--cpus", "2",
             "--output-dir", tmp_path / "out", "--json", tmp=tmp_path, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    ova = tmp_path / "out" / "deb12" / "deb12.ova"
    with tarfile.open(ova) as tar:
        assert [m.name for m in tar.getmembers()] == ["deb12.ovf", "deb12.mf", "deb12-disk1.vmdk"]

    v2v = tmp_path / "v2v"
    v2v.mkdir()
    env = dict(os.environ, **choose().peer_env())
    res = subprocess.run(["virt-v2v", "-v", "-i", "ova", str(ova), "-o", "local", "-os", str(v2v),
                          "-of", "qcow2"], capture_output=True, text=True, env=env, timeout=5400)
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-5000:])
    disk = v2v / "deb12-sda"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    # virt-v2v kept what the OVF said about the machine
    domain = (v2v / "deb12.xml").read_text()
    assert "<name>deb12</name>" in domain and ">2</vcpu>" in domain

    r = _cli("verify", "--json", "--evidence-dir", tmp_path / "ev", disk, tmp=tmp_path, timeout=3600)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    out = json.loads(r.stdout)
    results = out if isinstance(out, list) else out.get("results", [out])
    assert [x["status"] for x in results] == ["passed"], results
    assert results[0]["image_format"] == "qcow2" and results[0]["reason"] == "ready"
