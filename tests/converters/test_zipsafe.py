"""converters.archive.zipsafe: OVA as zip, with the tar rules and a zip-bomb ratio cap."""

from __future__ import annotations

import stat
import zipfile

import pytest

import converters_support as S
from builder.errors import UnsafeImageError
from converters.archive import zipsafe


def test_zip_bomb_ratio_refused(tmp_path):
    z = tmp_path / "bomb.ova"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("guest.ovf", "<Envelope/>")
        zf.writestr("disk.vmdk", b"\0" * (64 << 20))
    assert z.stat().st_size < 1 << 20
    with pytest.raises(UnsafeImageError, match="zip bomb"):
        zipsafe.extract_ova(z, tmp_path / "d")
    assert not (tmp_path / "d" / "disk.vmdk").exists()


@pytest.mark.parametrize("name,match", [("../x", "goes up a folder"), ("/abs/x", "absolute name")])
def test_zip_names_confined(tmp_path, name, match):
    z = tmp_path / "n.ova"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(name, b"boom")
    with pytest.raises(UnsafeImageError, match=match):
        zipsafe.extract_ova(z, tmp_path / "d")


def test_zip_symlink_refused(tmp_path):
    sent, marker = S.sentinel(tmp_path)
    z = tmp_path / "l.ova"
    with zipfile.ZipFile(z, "w") as zf:
        zi = zipfile.ZipInfo("disk.vmdk")
        zi.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(zi, str(sent))
    with pytest.raises(UnsafeImageError, match="symlink"):
        zipsafe.extract_ova(z, tmp_path / "d")
