"""Find the Windows system volume in an open libguestfs session and refuse what must not be
edited offline, before anything is written.

Refused (WindowsImageError, nothing written):
* dynamic disks: an MBR partition of type 0x42 or a GPT LDM metadata/data partition — Windows'
  Logical Disk Manager owns those volumes and an edit behind its back can lose them;
* a hibernated or Fast-Startup system volume (``ntfs-3g.probe --readwrite`` says 14 hibernated
  or 15 unclean; also a ``hibr``/``wake`` signature at the start of ``hiberfil.sys``): Windows
  resumes from its saved memory image and overwrites or corrupts what we changed;
* no Windows, or more than one, and Windows that is not x86/amd64.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.errors import GuestfsError, WindowsImageError

LDM_GPT_TYPES = {"5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "LDM metadata",
                 "AF9B60A0-1431-4F62-BC68-3311714A69AD": "LDM data"}
LDM_MBR_ID = 0x42
NTFS_PROBE = {14: "Windows is hibernated (or shut down with Fast Startup)",
              15: "the NTFS volume was not cleanly unmounted (Fast Startup, or a crash)"}
HIBERFIL_MAGIC = (b"hibr", b"wake", b"rstr")
MAX_HIVE_BYTES = 512 << 20        # real SYSTEM hives are 10-100 MiB

HINT_HIBERNATED = ("boot the guest and shut it down fully (`shutdown /s /f /t 0`, or turn off Fast "
                   "Startup: `powercfg /h off`), then try again; nothing was written")


@dataclass(frozen=True)
class SystemVolume:
    device: str          # /dev/sda2
    systemroot: str      # the guest path as the disk spells it, e.g. /Windows
    partition_table: str | None


def refuse_dynamic_disks(g) -> dict[str, str]:
    """Partition-table type per device; WindowsImageError on any LDM (dynamic) partition."""
    tables = {}
    for dev in g.list_devices():
        try:
            ptype = g.part_get_parttype(dev)
        except GuestfsError:
            continue                      # no partition table (a bare filesystem)
        tables[dev] = ptype
        for p in g.part_list(dev):
            n = p["part_num"]
            if ptype == "msdos":
                try:
                    mbr_id = g.part_get_mbr_id(dev, n)
                except GuestfsError:
                    continue              # an extended partition's container
                if mbr_id == LDM_MBR_ID:
                    raise WindowsImageError(
                        f"{dev}{n} is a Windows dynamic disk partition (MBR type 0x42, Logical Disk "
                        "Manager); ironforge does not edit dynamic disks offline",
                        hint="convert it to a basic disk inside Windows (Disk Management) first; "
                             "nothing was written")
            elif ptype == "gpt":
                guid = g.part_get_gpt_type(dev, n).upper()
                if guid in LDM_GPT_TYPES:
                    raise WindowsImageError(
                        f"{dev}{n} is a Windows dynamic disk partition (GPT {LDM_GPT_TYPES[guid]}, "
                        f"{guid}); ironforge does not edit dynamic disks offline",
                        hint="convert it to a basic disk inside Windows (Disk Management) first; "
                             "nothing was written")
    return tables


def find_path(g, path: str) -> str | None:
    """The path as the (case-preserving) filesystem spells it, or None if it does not exist."""
    try:
        real = g.case_sensitive_path(path)
    except GuestfsError:
        return None
    return real if g.exists(real) else None


def find_system_volume(g) -> SystemVolume:
    """Mount (read-only, at /) the one NTFS volume holding Windows\\System32\\config."""
    tables = refuse_dynamic_disks(g)
    found = []
    for dev, fstype in sorted(g.list_filesystems().items()):
        if fstype != "ntfs":
            continue
        try:
            g.mount_ro(dev, "/")
        except GuestfsError:
            continue
        try:
            for root in ("/windows", "/winnt"):
                sr = find_path(g, root)
                if sr and find_path(g, sr + "/system32/config") and g.is_dir(find_path(g, sr + "/system32/config")):
                    found.append((dev, sr))
                    break
        finally:
            g.umount_all()
    if not found:
        raise WindowsImageError("no Windows installation on this disk (no NTFS volume with "
                                "Windows\\System32\\config)",
                                hint="inject-drivers edits Windows system disks only; nothing was written")
    if len(found) > 1:
        raise WindowsImageError("more than one Windows installation on this disk: "
                                + ", ".join(f"{d}:{r}" for d, r in found),
                                hint="inject into one system disk at a time; nothing was written")
    dev, sr = found[0]
    code = g.ntfs_3g_probe(True, dev)
    if code in NTFS_PROBE:
        raise WindowsImageError(f"{dev}: {NTFS_PROBE[code]}; editing it offline would be lost or "
                                "corrupt the volume when Windows resumes", hint=HINT_HIBERNATED)
    if code != 0:
        raise WindowsImageError(f"{dev}: ntfs-3g cannot open the volume for writing (ntfs-3g.probe "
                                f"code {code})", hint="check the volume with chkdsk inside Windows; "
                                                      "nothing was written")
    g.mount_ro(dev, "/")
    hib = find_path(g, "/hiberfil.sys")
    if hib and g.is_file(hib) and g.filesize(hib) >= 4:
        magic = bytes(g.pread(hib, 4, 0)).lower()
        if magic in HIBERFIL_MAGIC:
            g.umount_all()
            raise WindowsImageError(f"{dev}: hiberfil.sys holds a saved memory image ({magic.decode()!r}): "
                                    "Windows is hibernated or used Fast Startup", hint=HINT_HIBERNATED)
    ptable = None
    for d, t in tables.items():
        if dev.startswith(d):
            ptable = t
    return SystemVolume(dev, sr, ptable)


def read_small(g, path: str, limit: int) -> bytes:
    size = g.filesize(path)
    if size > limit:
        raise WindowsImageError(f"{path} is {size} bytes, over the limit of {limit}")
    return bytes(g.pread(path, min(size, limit), 0)) if size else b""


def download_bounded(g, path: str, local, limit: int = MAX_HIVE_BYTES) -> None:
    size = g.filesize(path)
    if size > limit:
        raise WindowsImageError(f"{path} is {size >> 20} MiB, over the {limit >> 20} MiB limit for a hive")
    g.download(path, str(local))
