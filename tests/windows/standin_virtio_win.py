"""A STAND-IN virtio-win tree for tests: the real layout (spec §1.1), placeholder bytes.

No virtio-win binaries can be fetched here, so this builds the tree from a path list with the
real folder and file names, in the directory layout and as an ISO made like the real one
(``mkisofs -r``, Rock Ridge, no Joliet; here ``xorriso -as mkisofs -r``). Every file's bytes
name its own path (``stand-in virtio-win: <path>``), so a test can tell which source file was
copied where. ARM64 folders and every other OS's folders are decoys a correct selector skips.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from builder.host.proc import run
from builder.host.tools import require

# (os folder as the real tree spells it, arches); ARM64 only for w10/w11 (DRIVER_OS_MAP)
OS_ARCHES = [
    ("xp", ("x86",)), ("2k3", ("x86", "amd64")), ("2k8", ("x86", "amd64")), ("2k8R2", ("amd64",)),
    ("w7", ("x86", "amd64")), ("w8", ("x86", "amd64")), ("w8.1", ("x86", "amd64")),
    ("2k12", ("amd64",)), ("2k12R2", ("amd64",)), ("w10", ("x86", "amd64", "ARM64")),
    ("2k16", ("amd64",)), ("2k19", ("amd64",)), ("w11", ("amd64", "ARM64")), ("2k22", ("amd64",)),
    ("2k25", ("amd64",)),
]
NEW_OSES = {"w10", "2k16", "2k19", "w11", "2k22", "2k25"}

# driver folder -> (file stem, extensions, extra files, OS folders it ships for or None = all)
DRIVERS = {
    "viostor": ("viostor", (".inf", ".sys", ".cat", ".pdb"), (), None),
    "vioscsi": ("vioscsi", (".inf", ".sys", ".cat", ".pdb"), (), None),
    "NetKVM": ("netkvm", (".inf", ".sys", ".cat", ".pdb"), ("netkvmco.exe", "netkvmp.exe"), None),
    "Balloon": ("balloon", (".inf", ".sys", ".cat", ".pdb"), ("blnsvr.exe", "blnsvr.pdb"), None),
    "vioserial": ("vioser", (".inf", ".sys", ".cat", ".pdb"), (), None),
    "viorng": ("viorng", (".inf", ".sys", ".cat", ".pdb"), (), None),
    "vioinput": ("vioinput", (".inf", ".sys", ".cat", ".pdb"), (), NEW_OSES),
    "viofs": ("viofs", (".inf", ".sys", ".cat", ".pdb"), (), NEW_OSES),
    "pvpanic": ("pvpanic", (".inf", ".sys", ".cat", ".pdb"), (), None),
    "qemupciserial": ("qemupciserial", (".inf", ".cat"), (), None),
    "qemufwcfg": ("qemufwcfg", (".inf", ".cat"), (), None),
    "fwcfg": ("fwcfg", (".inf", ".sys", ".cat", ".pdb"), (), NEW_OSES),
    "sriov": ("vioprot", (".inf", ".sys", ".cat", ".pdb"), (), NEW_OSES),
    "smbus": ("smbus", (".inf", ".cat"), (), {"2k8", "2k8R2"}),
}
ROOT_FILES = ["virtio-win-gt-x64.msi", "virtio-win-gt-x86.msi", "virtio-win-guest-tools.exe",
              "guest-agent/qemu-ga-i386.msi", "guest-agent/qemu-ga-x86_64.msi", "data/info.json",
              "cert/Virtio_Win_Test_Certificate.cer"]


def path_list() -> list[str]:
    """Every path of the stand-in tree (POSIX, relative)."""
    out = list(ROOT_FILES)
    for folder, (stem, exts, extras, only) in DRIVERS.items():
        for os_name, arches in OS_ARCHES:
            if only is not None and os_name not in only:
                continue
            for arch in arches:
                out += [f"{folder}/{os_name}/{arch}/{stem}{ext}" for ext in exts]
                out += [f"{folder}/{os_name}/{arch}/{x}" for x in extras]
    # the "auto" tree for Setup's Load driver dialog: viostor and vioscsi, w10+ and 2k16+
    for arch_dir, arch in (("i386", "x86"), ("amd64", "amd64")):
        for os_name, arches in OS_ARCHES:
            if os_name in NEW_OSES and arch in arches:
                out += [f"{arch_dir}/{os_name}/{d}.{e}" for d in ("viostor", "vioscsi")
                        for e in ("inf", "sys", "cat")]
    return sorted(out)


def content(path: str) -> bytes:
    """Placeholder bytes; the auto tree holds the same bytes as by-driver (hard links upstream)."""
    parts = path.split("/")
    if parts[0] in ("i386", "amd64") and len(parts) == 3:
        drv, ext = parts[2].split(".")
        path = f"{drv}/{parts[1]}/{'x86' if parts[0] == 'i386' else 'amd64'}/{parts[2]}"
    return f"stand-in virtio-win: {path}\n".encode()


def digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def make_tree(root: Path, paths: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for p in paths if paths is not None else path_list():
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content(p))
    return root


def make_iso(tree: Path, iso: Path) -> Path:
    """The tree as an ISO made the way virtio-win's is (Rock Ridge, no Joliet)."""
    tmp = iso.with_name(iso.name + ".part")
    run([require("xorriso"), "-as", "mkisofs", "-r", "-iso-level", "4", "-V", "virtio-win-standin",
         "-o", str(tmp), str(tree)], what="xorriso (stand-in virtio-win ISO)", timeout=120)
    tmp.rename(iso)
    return iso


def standin(cache: Path) -> tuple[Path, Path]:
    """(directory, iso) of the stand-in tree, built once per content digest under ``cache``."""
    base = cache / f"standin-virtio-win-{digest()}"
    tree, iso = base / "tree", base / "virtio-win-standin.iso"
    if not iso.exists():
        if base.exists():
            shutil.rmtree(base)
        work = cache / f".standin-virtio-win-{digest()}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        make_tree(work / "tree")
        make_iso(work / "tree", work / "virtio-win-standin.iso")
        work.rename(base)
    return tree, iso
