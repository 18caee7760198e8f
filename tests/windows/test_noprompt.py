"""El Torito no-prompt copies of stand-in installer ISOs (made here: placeholder boot images, not
Microsoft media), read back with ``xorriso -report_el_torito``."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pycdlib
import pytest

from builder.windows import noprompt as np

PROMPT = b"stand-in efisys.bin\n" * 1024           # 20 KiB
NOPROMPT = b"stand-in efisys_noprompt.bin\n" * 1500  # ~43 KiB
ETFS = b"stand-in etfsboot.com\n" * 180


def _report(iso: Path) -> dict[int, dict]:
    out = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain"],
                         capture_output=True, text=True, check=True).stdout
    imgs: dict[int, dict] = {}
    for line in out.splitlines():
        m = re.match(r"El Torito boot img :\s+(\d+)\s+(\w+)\s+(\w)\s+\w+\s+\S+\s+\S+\s+(\d+)\s+(\d+)", line)
        if m:
            imgs[int(m.group(1))] = {"platform": m.group(2), "sectors": int(m.group(4)), "lba": int(m.group(5))}
        m = re.match(r"El Torito img path :\s+(\d+)\s+(\S+)", line)
        if m:
            imgs[int(m.group(1))]["path"] = m.group(2)
    return imgs


def _xorriso_iso(tmp: Path, name: str, with_noprompt: bool = True, efi_image: str = "efisys.bin") -> Path:
    root = tmp / f"{name}-root"
    (root / "efi/microsoft/boot").mkdir(parents=True)
    (root / "boot").mkdir()
    (root / "efi/microsoft/boot/efisys.bin").write_bytes(PROMPT)
    if with_noprompt:
        (root / "efi/microsoft/boot/efisys_noprompt.bin").write_bytes(NOPROMPT)
    (root / "boot/etfsboot.com").write_bytes(ETFS)
    (root / "README.TXT").write_text("stand-in installer media\n")
    iso = tmp / f"{name}.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-J", "-o", str(iso), "-b", "boot/etfsboot.com",
                    "-no-emul-boot", "-boot-load-size", "8", "-eltorito-alt-boot",
                    "-e", f"efi/microsoft/boot/{efi_image}", "-no-emul-boot", str(root)],
                   check=True, capture_output=True)
    return iso


def _udf_bridge_iso(tmp: Path) -> Path:
    """Like Microsoft media: the no-prompt image exists only in the UDF tree."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, udf="2.60", vol_ident="STANDIN")
    iso.add_fp(io.BytesIO(b"readme\n"), 7, "/README.TXT;1")
    for iso_dir, udf_dir in (("/EFI", "/efi"), ("/EFI/MS", "/efi/microsoft"), ("/EFI/MS/BOOT", "/efi/microsoft/boot")):
        iso.add_directory(iso_dir, udf_path=udf_dir)
    iso.add_fp(io.BytesIO(ETFS), len(ETFS), "/ETFSBOOT.COM;1")
    iso.add_fp(io.BytesIO(PROMPT), len(PROMPT), "/EFI/MS/BOOT/EFISYS.BIN;1", udf_path="/efi/microsoft/boot/efisys.bin")
    iso.add_fp(io.BytesIO(NOPROMPT), len(NOPROMPT), udf_path="/efi/microsoft/boot/efisys_noprompt.bin")
    iso.add_eltorito("/ETFSBOOT.COM;1", bootcatfile="/BOOT.CAT;1", media_name="noemul", boot_load_size=8)
    iso.add_eltorito("/EFI/MS/BOOT/EFISYS.BIN;1", efi=True, media_name="noemul")
    out = tmp / "udf-bridge.iso"
    iso.write(str(out))
    iso.close()
    return out


def _diff_offsets(a: Path, b: Path) -> list[int]:
    x, y = a.read_bytes(), b.read_bytes()
    assert len(x) == len(y)
    return [i for i in range(len(x)) if x[i] != y[i]]


def test_stand_in_iso_efi_entry_repointed_and_nothing_else_changes(tmp_path):
    src = _xorriso_iso(tmp_path, "standin")
    before = _report(src)
    assert before[2]["platform"] == "UEFI" and before[2]["path"] == "/efi/microsoft/boot/efisys.bin"
    original = src.read_bytes()
    res = np.make_noprompt_copy(src, tmp_path / "noprompt.iso")
    assert res.route == np.ROUTE_PATCHED and res.efi_image.endswith("efisys_noprompt.bin")
    after = _report(tmp_path / "noprompt.iso")
    assert after[2]["path"] == "/efi/microsoft/boot/efisys_noprompt.bin"
    assert after[2]["sectors"] == -(-len(NOPROMPT) // 512) and after[2]["lba"] == res.load_rba_after
    assert after[1] == before[1]                               # the BIOS entry is untouched
    assert src.read_bytes() == original                        # the media are untouched
    diff = _diff_offsets(src, tmp_path / "noprompt.iso")
    assert diff and all(res.catalog_offset + 6 <= i < res.catalog_offset + 12 for i in diff)
    assert not list(tmp_path.glob(".*.tmp"))


def test_stand_in_udf_bridge_media_found_through_udf(tmp_path):
    src = _udf_bridge_iso(tmp_path)
    res = np.make_noprompt_copy(src, tmp_path / "noprompt.iso")
    assert res.route == np.ROUTE_PATCHED and res.efi_image == "/efi/microsoft/boot/efisys_noprompt.bin"
    after = _report(tmp_path / "noprompt.iso")
    uefi = [e for e in after.values() if e["platform"] == "UEFI"][0]
    assert uefi["lba"] == res.load_rba_after
    data = (tmp_path / "noprompt.iso").read_bytes()
    assert data[uefi["lba"] * 2048:uefi["lba"] * 2048 + len(NOPROMPT)] == NOPROMPT


def test_routes_without_a_copy(tmp_path):
    no_file = _xorriso_iso(tmp_path, "old", with_noprompt=False)
    assert np.make_noprompt_copy(no_file, tmp_path / "a.iso").route == np.ROUTE_SEND_KEY
    already = _xorriso_iso(tmp_path, "already", efi_image="efisys_noprompt.bin")
    assert np.make_noprompt_copy(already, tmp_path / "b.iso").route == np.ROUTE_ALREADY
    standin = _xorriso_iso(tmp_path, "bios")
    assert np.make_noprompt_copy(standin, tmp_path / "c.iso", firmware="bios").route == np.ROUTE_BIOS
    assert not any((tmp_path / n).exists() for n in ("a.iso", "b.iso", "c.iso"))


def test_hostile_or_wrong_media_refused_nothing_written(tmp_path):
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 40960)
    with pytest.raises(np.MediaBootError, match="not an ISO 9660"):
        np.make_noprompt_copy(junk, tmp_path / "out.iso")
    plain = tmp_path / "plain.iso"
    (tmp_path / "p").mkdir()
    (tmp_path / "p/x.txt").write_text("x")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(plain), str(tmp_path / "p")], check=True,
                   capture_output=True)
    with pytest.raises(np.MediaBootError, match="no El Torito"):
        np.make_noprompt_copy(plain, tmp_path / "out.iso")
    bad = _xorriso_iso(tmp_path, "badsum")
    cat_off, _ = np.boot_catalog(bad)
    data = bytearray(bad.read_bytes())
    data[cat_off + 4] ^= 0xFF                                   # break the validation checksum
    bad.write_bytes(data)
    with pytest.raises(np.MediaBootError, match="checksum"):
        np.make_noprompt_copy(bad, tmp_path / "out.iso")
    truncated = _xorriso_iso(tmp_path, "short")
    truncated.write_bytes(truncated.read_bytes()[:17 * 2048 + 100])
    with pytest.raises(np.MediaBootError):
        np.make_noprompt_copy(truncated, tmp_path / "out.iso")
    assert not (tmp_path / "out.iso").exists()
