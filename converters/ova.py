"""An OVA (tar, tar.gz, tar.xz, zip, or an unpacked folder) to a SourceVM whose disks lie in a
folder we control: exactly one ``.ovf``; every ``.mf`` line checked; hrefs confined."""

from __future__ import annotations

from pathlib import Path

from converters import manifest, ovf
from converters.archive import tarsafe, zipsafe
from converters.model import SourceVM
from converters.refuse import refuse


def open_ova(src: Path, private: Path) -> SourceVM:
    """``private``: an empty folder of ours: an archive is unpacked into ``unpacked/``, gzip disk
    files are inflated into ``inflated/`` (so no member can pre-empt an inflated name)."""
    if src.is_dir():
        base = src
    else:
        base = private / "unpacked"
        if zipsafe.is_zip(src):
            zipsafe.extract_ova(src, base)
        else:
            tarsafe.extract_ova(src, base)
    ovfs = sorted(p for p in base.rglob("*.ovf") if p.is_file() and not p.is_symlink())
    if len(ovfs) != 1:
        refuse(src, f"an OVA must hold exactly one .ovf, this one holds {len(ovfs)}")
    top = ovfs[0].parent
    notes: list[str] = []
    mfs = sorted(top.glob("*.mf"))
    for mf in mfs:
        verified, mf_notes = manifest.check(mf, top)
        notes += mf_notes + [f"{mf.name}: {len(verified)} digests verified"]
    if not mfs:
        notes.append("no .mf manifest: nothing to verify the files against")
    vm = ovf.parse(ovfs[0], top, scratch=private / "inflated")
    vm.notes.extend(notes)
    return vm
