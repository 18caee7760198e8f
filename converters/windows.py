"""Windows guests: the facts inspection reports (the shared builder.windows readers: version from
the hives, arch from cmd.exe's PE header) and the foreign paravirtual drivers and tools the
conversion disables (Start=4) in the same launch as the virtio injection (builder.windows.inject,
through its ``extra_edits``)."""

from __future__ import annotations

from pathlib import Path

from builder.windows import detect, inject
from builder.windows.hive_edits import Hive, KeyEdit, Value

# services of Xen PV (GPLPV and the Citrix/XenServer drivers), Parallels Tools and VMware Tools;
# a disabled driver stays on disk, so the change is undone by setting Start back
PV_SERVICES = {
    "Xen": ("xenbus", "xenfilt", "xeniface", "xennet", "xenvbd", "xenvif", "xendisk", "xenpci",
            "xenscsi", "xenhide", "xensvc", "XenSvc", "xenagent", "xenpv-win"),
    "Parallels": ("prl_boot", "prl_dd", "prl_eth5", "prl_fs", "prl_memdev", "prl_mouf", "prl_pv32",
                  "prl_pv64", "prl_scsi", "prl_sound", "prl_strg", "prl_tg", "prl_time",
                  "prl_tools", "prl_tools_service", "prl_vid"),
    "VMware": ("VMTools", "vmci", "vmhgfs", "vmmemctl", "vmmouse", "vmusbmouse", "vm3dmp", "vmrawdsk",
               "vmxnet3ndis6", "vsock", "vmvss", "VGAuthService"),
}
DISABLED = 4


def present_pv_services(system: Hive, control_set: str) -> dict[str, str]:
    """Foreign service -> hypervisor, for the services the guest's SYSTEM hive has (keys are
    matched case-insensitively, as Windows does)."""
    have = {c.lower(): c for c in system.children((control_set, "Services"))}
    out = {}
    for hv, names in PV_SERVICES.items():
        for n in names:
            if n.lower() in have:
                out[have[n.lower()]] = hv
    return out


def pv_edits(control_set: str, services: dict[str, str]) -> tuple[KeyEdit, ...]:
    return tuple(KeyEdit("SYSTEM", (control_set, "Services", name), (Value.dword("Start", DISABLED),),
                         why=f"{hv} paravirtual driver or tool: its device is gone under KVM")
                 for name, hv in sorted(services.items()))


def collect(g, workdir: Path) -> dict:
    """Windows facts from a session with the drives added and nothing mounted (read-only)."""
    vol = detect.find_system_volume(g)
    config = detect.find_path(g, vol.systemroot + "/System32/config")
    hives = {}
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("SYSTEM", "SOFTWARE"):
        p = detect.find_path(g, f"{config}/{name}")
        if not p or not g.is_file(p):
            from builder.errors import WindowsImageError
            raise WindowsImageError(f"no {name} hive at {config}/{name}", hint="not a Windows system volume")
        detect.download_bounded(g, p, workdir / name)
        hives[name] = Hive(workdir / name, name)
    cmd = detect.find_path(g, vol.systemroot + "/System32/cmd.exe")
    header = bytes(g.pread(cmd, min(inject.CMD_EXE_BYTES, g.filesize(cmd)), 0)) if cmd else b""
    facts = inject.read_facts(g, vol, hives["SYSTEM"], hives["SOFTWARE"], header)
    services = present_pv_services(hives["SYSTEM"], facts.control_set)
    g.umount_all()
    return {"type": "windows", **facts.to_dict(), "bits": 64 if facts.arch in ("amd64", "x86_64", "arm64") else 32,
            "firmware": "uefi" if vol.partition_table == "gpt" else "bios",
            "foreign_services": services}
