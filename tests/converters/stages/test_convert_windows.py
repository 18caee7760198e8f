"""A Windows guest through ``ironforge convert`` (recipe method): inspect reads the version and
arch with the builder.windows readers, convert injects virtio through builder.windows.inject in
its own launch, drivers carries the image forward. STAND-INS: the guest is a phony Windows disk
(tests/windows/phony.py: NTFS, hives, a stub cmd.exe; it does not boot) and the drivers are the
stand-in virtio-win tree (placeholder bytes, real names). Launches: the phony disk, inspect,
convert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared_cache import cache_root
from windows import standin_virtio_win
from windows.phony import make_phony_windows

REPO = Path(__file__).resolve().parents[3]


def test_standin_windows_guest_gets_virtio_injected_by_convert(tmp_path):
    disk = make_phony_windows(tmp_path / "win10-amd64.qcow2", "10", "amd64")
    cache = cache_root() / "windows"
    cache.mkdir(parents=True, exist_ok=True)
    tree, _iso = standin_virtio_win.standin(cache)
    recipe = tmp_path / "win10conv.toml"
    recipe.write_text('arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n[build]\nmethod = "convert"\n'
                      f'[source.image]\npath = "{disk}"\n[windows.virtio_win]\npath = "{tree}"\n'
                      '[verify]\nenabled = false\n')
    env = {**os.environ, "IRONFORGE_CACHE": str(tmp_path / "cache"), "IRONFORGE_OUTPUT": str(tmp_path / "out")}
    r = subprocess.run([sys.executable, "-m", "builder.cli", "build", "--json", str(recipe)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-4000:]
    man = json.loads((tmp_path / "out" / "win10conv" / "manifest.json").read_text())
    facts = man["inputs"]["inspect"]["facts"]
    assert (facts["type"], facts["arch"], facts["bits"]) == ("windows", "x86_64", 64)
    assert facts["foreign_services"] == {}
    conv = man["conversion"]
    assert conv["os"] == "windows" and conv["inject"]["written"]
    assert "viostor" in conv["inject"]["block_drivers"]
    assert any(f["path"].lower().endswith("/system32/drivers/viostor.sys") and f["action"] == "add"
               for f in conv["inject"]["files"])
    assert [s["name"] for s in man["stages"]] == ["import", "inspect", "convert", "drivers", "export"]
