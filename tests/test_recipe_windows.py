"""Windows recipe validation: the shipped recipes, and the refusals with their reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import recipe as recipes
from builder.errors import RecipeError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["windows-10-amd64", "windows-10-x86", "windows-11-amd64", "windows-server-2019-amd64",
           "windows-server-2022-amd64", "windows-server-2025-amd64"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_windows_recipes_validate(name):
    r = recipes.load(name, REPO / "recipes")
    assert r.family == "windows"
    assert r.get("windows.media.path") is None      # no Microsoft media are shipped
    assert r.get("windows.admin_password") == {"env": "IRONFORGE_WINDOWS_ADMIN_PASSWORD"}


def test_shipped_arch_firmware_and_release():
    got = {n: (recipes.load(n, REPO / "recipes").arch, recipes.load(n, REPO / "recipes").get("firmware"),
               recipes.load(n, REPO / "recipes").release) for n in SHIPPED}
    assert got["windows-10-x86"] == ("i686", "bios", "10")
    assert got["windows-11-amd64"] == ("x86_64", "uefi", "11")
    assert got["windows-server-2025-amd64"][2] == "server-2025"


def _problems(tmp_path, text: str) -> list[str]:
    p = tmp_path / "r.toml"
    p.write_text(text)
    with pytest.raises(RecipeError) as exc:
        recipes.load(str(p), REPO / "recipes")
    return [f"{x.key}: expected {x.expected}, got {x.got}" for x in exc.value.problems]


def test_32_bit_windows_11_and_server_refused(tmp_path):
    assert any(p.startswith("arch: expected amd64 (Microsoft ships no 32-bit Windows 11)")
               for p in _problems(tmp_path, 'extends = "windows-11-amd64"\narch = "x86"\n'))
    assert any("no 32-bit Windows Server 2022" in p
               for p in _problems(tmp_path, 'extends = "windows-server-2022-amd64"\narch = "i386"\nfirmware = "bios"\n'))


def test_bios_for_windows_11_refused(tmp_path):
    probs = _problems(tmp_path, 'extends = "windows-11-amd64"\nfirmware = "bios"\n[windows]\nsecure_boot = false\n')
    assert probs == ['firmware: expected "uefi" (Windows 11 Setup refuses BIOS machines), got "bios"']


def test_other_windows_refusals_collected_together(tmp_path):
    probs = _problems(tmp_path, """
arch = "amd64"
firmware = "bios"
[os]
family = "windows"
release = "12"
[windows]
secure_boot = true
""")
    assert probs == ['os.release: expected a Windows release: "7", "8.1", "10", "11", "server-2016", '
                     '"server-2019", "server-2022", "server-2025", got "12"']
    probs = _problems(tmp_path, """
extends = "windows-10-amd64"
firmware = "bios"
[windows]
secure_boot = true
admin_password = "Hunter2-in-recipe"
[windows.media]
path = "a.iso"
url = "https://example.org/a.iso"
[windows.virtio_win]
url = "https://example.org/v.iso"
[[windows.users]]
name = "Administrator"
password = { env = "X" }
""")
    keys = [p.split(":")[0] for p in probs]
    assert keys == ["windows.admin_password", "windows.secure_boot", "windows.media", "windows.media.sha256",
                    "windows.virtio_win.sha256", "windows.users[0].name"]
    assert "Hunter2" not in " ".join(probs)     # a would-be secret is never echoed


def test_release_aliases_normalise(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('extends = "windows-server-2022-amd64"\n[os]\nrelease = "2019"\n')
    assert recipes.load(str(p), REPO / "recipes").release == "server-2019"
