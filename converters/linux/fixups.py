"""The Linux conversion: plan every change from the facts (pure, so ``--dry-run`` prints exactly
what ``convert`` does), then apply it in the convert stage's one writable launch.

Order when applying: file edits, foreign tools removed, initramfs with virtio (rebuilt only when
the listing lacks a module), GRUB installed on the virtio disk layout and its config regenerated
with the guest's own grub-mkconfig, then the generated grub.cfg is checked: every kernel line must
say root=UUID=<the root filesystem's UUID>, never a device name the appliance made up.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from builder import settings
from builder.errors import BuildError
from builder.host.guestfs_session import guest_command
from builder.linux import bootloader, initramfs
from builder.linux.rootfs import kernel_version_key, set_shell_vars
from converters.linux import console, devices, kernel, network, tools
from converters.linux import facts as linux_facts
from converters.linux.edits import FileEdit, GuestRun

log = logging.getLogger("ironforge.convert.linux")

DISTROS = ("debian", "ubuntu", "linuxmint", "kalilinux", "fedora", "rhel", "centos", "rocky",
           "almalinux", "oraclelinux", "scientificlinux", "redhat-based")
DRACUT_CONF = "/etc/dracut.conf.d/ironforge-virtio.conf"
GRUB_LIMIT = 1800


@dataclass
class Plan:
    edits: list[FileEdit] = field(default_factory=list)
    removals: list[GuestRun] = field(default_factory=list)
    initramfs: dict = field(default_factory=dict)
    grub: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    default_kernel: dict = field(default_factory=dict)
    kernel_install: dict = field(default_factory=dict)

    def steps(self) -> list[str]:
        """One line per change, for the dry run and the summary."""
        out = [f"kernel: install {self.kernel_install['package']}: {self.kernel_install['why']}"] \
            if self.kernel_install else []
        out += [f"{e.action} {e.path}: {e.why}" for e in self.edits]
        out += [f"run {' '.join(r.argv)}: {r.why}" for r in self.removals]
        if self.initramfs:
            out.append(f"initramfs: {self.initramfs['why']}")
        if self.grub:
            out.append(f"grub: {self.grub['why']}")
        out.append(f"network: {self.network.get('action')}: "
                   f"{self.network.get('reason') or self.network.get('interface')}")
        return out + [f"note: {n}" for n in self.notes]

    def to_dict(self) -> dict:
        return {"files": [e.to_dict() for e in self.edits],
                "commands": [r.to_dict() for r in self.removals],
                "initramfs": self.initramfs, "grub": self.grub, "network": self.network,
                "default_kernel": self.default_kernel, "kernel_install": self.kernel_install,
                "notes": self.notes}


def _merge(edits: list[FileEdit], original: dict[str, str | None]) -> list[FileEdit]:
    """Several planners may edit one file: one edit per path, from the original text to the
    last, with every reason."""
    by: dict[str, FileEdit] = {}
    for e in edits:
        prev = by.get(e.path)
        why = f"{prev.why}; {e.why}" if prev else e.why
        old = original[e.path] if e.path in original else (prev.old if prev else e.old)
        by[e.path] = FileEdit(e.path, e.new, why, old, e.link)
    # a removal stays even when the file's text was never read (a symlink)
    return [e for e in by.values() if e.link is not None or e.new is None or e.new != e.old]


def refuse_unsupported(facts: dict) -> None:
    if facts.get("distro") not in DISTROS:
        raise BuildError(f"conversion of {facts.get('distro')!r} Linux guests is not supported",
                         hint="supported: Debian, Ubuntu and the RHEL family")
    if facts.get("package_format") not in ("deb", "rpm"):
        raise BuildError(f"the guest's package format is {facts.get('package_format')!r}, not deb or rpm")
    what = missing_kernel(facts)
    if what and kernel.package_for(facts) is None:
        raise BuildError(f"the guest has {what}: it cannot boot from a virtio disk",
                         hint="install a virtio-capable kernel in the guest before converting; ironforge "
                              "installs one only into Debian releases it builds (12, 13)")


def missing_kernel(facts: dict) -> str | None:
    """Why no kernel of the guest can boot from virtio, or None when one can."""
    ks = facts.get("kernels") or []
    if any(k["virtio_capable"] and k["vmlinuz"] for k in ks):
        return None
    return ("only Xen-PV-only kernels" if ks and all(k["xen_pv_only"] for k in ks)
            else "no kernel with virtio_blk" if ks else "no kernel")


def default_kernel(cur: dict[str, str | None], facts: dict) -> tuple[list[FileEdit], dict]:
    """Debian's GRUB boots its first entry, the highest kernel version. When some kernel cannot
    boot from virtio (a Xen-PV-only one) that one may sort first: pin GRUB_DEFAULT to the newest
    virtio-capable kernel's menu entry (Debian's 10_linux ids: the submenu, then the entry, both
    named with the root filesystem's UUID). All kernels virtio-capable: GRUB_DEFAULT is left."""
    ks = [k for k in facts.get("kernels") or [] if k.get("vmlinuz")]
    good = [k for k in ks if k.get("virtio_capable")]
    uuid = facts.get("uuids", {}).get(facts.get("root"))
    text = cur.get("/etc/default/grub")
    if not good or len(good) == len(ks) or not uuid or text is None:
        return [], {}
    best = max(good, key=lambda k: kernel_version_key(k["version"]))
    entry = f"gnulinux-advanced-{uuid}>gnulinux-{best['version']}-advanced-{uuid}"
    others = ", ".join(k["version"] for k in ks if not k.get("virtio_capable"))
    why = f"GRUB_DEFAULT: the newest virtio-capable kernel {best['version']} (not {others}, which cannot boot from virtio)"
    new = set_shell_vars(text, {"GRUB_DEFAULT": entry})
    return [FileEdit("/etc/default/grub", new, why, text)], {"kernel": best["version"], "entry": entry}


def plan(facts: dict, macs: list[str] | None = None,
         modules: tuple[str, ...] = settings.VIRTIO_MODULES) -> Plan:
    refuse_unsupported(facts)
    original: dict[str, str | None] = dict(facts["files"])
    cur = dict(original)
    raw: list[FileEdit] = []

    def take(es):
        for e in es:
            raw.append(e)
            if e.link is None:
                cur[e.path] = e.new

    take(devices.plan(cur, facts["uuids"]))
    take(console.plan(cur, facts.get("getty_links", {})))
    net_edits, decision = network.plan(cur, [m for m in (macs or []) if m])
    take(net_edits)
    p = Plan(network=decision)
    what = missing_kernel(facts)
    if what:
        p.kernel_install = {"package": kernel.package_for(facts),
                            "why": f"the guest has {what}; the release's kernel, fetched by apt on the host "
                                   "(signature-checked), installed by the guest's dpkg"}
    if facts.get("package_format") == "deb":
        dk_edits, p.default_kernel = default_kernel(cur, facts)
        take(dk_edits)

    fmt = facts["package_format"]
    if fmt == "deb":
        text = cur.get(initramfs.MODULES_FILE) or ""
        new, added = initramfs.with_modules(text, list(modules))
        if added:
            take([FileEdit(initramfs.MODULES_FILE, new, f"virtio modules {', '.join(added)} always in the "
                           "initramfs (the old configuration did not list them)", original.get(initramfs.MODULES_FILE))])
        listed = kernel.root_modules(facts.get("boot_fstypes") or [])
        p.initramfs = {"tool": "initramfs-tools", "modules": list(modules), "added_to_config": added,
                       "list_build": list(listed) if listed else None,
                       "why": "every kernel's initramfs checked for " + ", ".join(modules)
                              + " by its listing; update-initramfs in the guest where one is missing"
                              + (f" (MODULES=list for this build: the virtio set and {', '.join(listed)}; "
                                 "the guest's own setting for its later builds)" if listed else "")}
    else:
        conf = f'add_drivers+=" {" ".join(modules)} "\n'
        take([FileEdit(DRACUT_CONF, conf, "dracut adds the virtio modules to every initramfs",
                       original.get(DRACUT_CONF))])
        p.initramfs = {"tool": "dracut", "modules": list(modules),
                       "why": "dracut -f for every kernel, with the virtio modules"}

    p.removals = tools.plan(tools.safe_names(facts.get("foreign_tools", [])), fmt,
                            parallels_tools=bool(facts.get("parallels_tools")))
    p.edits = _merge(raw, original)
    bl = facts.get("bootloader")
    if bl in ("grub2", "grub2-efi") and facts.get("has_update_grub"):
        install = bl == "grub2" and facts.get("has_grub_pc") and facts.get("firmware") == "bios"
        why = ("grub-install on the disk holding /boot (a Xen PV guest booted by pygrub has no "
               "boot sector of its own); " if install else "")
        target = "i386-pc"
        efi = facts.get("esp_files") or {}
        if bl == "grub2-efi" and efi and not efi.get("fallback_present"):
            if efi.get("grub_efi_modules"):
                install, target = True, "x86_64-efi"
                why = (f"grub-install --removable: \\EFI\\BOOT\\{efi['fallback']}, the loader a new VM's "
                       "firmware finds without the source's NVRAM boot entries (which stay behind with "
                       f"the old hypervisor; the ESP had only {', '.join(efi.get('vendors') or ['nothing'])}); ")
            else:
                p.notes.append(f"the ESP has no \\EFI\\BOOT\\{efi.get('fallback') or 'fallback loader'} and the "
                               "guest has no GRUB EFI modules to make one: the new VM's firmware needs a boot "
                               "entry for " + ", ".join(efi.get("vendors") or ["its loader"]))
        p.grub = {"install": bool(install), "target": target, "regenerate": True,
                  "why": why + "update-grub in the guest, then every kernel line checked for root=UUID="}
    elif bl == "none":
        p.notes.append("no bootloader found (grub.cfg, menu.lst): the guest needs one to boot on KVM")
    else:
        p.notes.append(f"bootloader {bl}: its configuration was rewritten as text, not regenerated")
    return p


def apply_edit(g, e: FileEdit) -> None:
    if e.link is not None:
        if g.is_symlink(e.path) or g.exists(e.path):
            g.rm_f(e.path)
        g.mkdir_p(e.path.rsplit("/", 1)[0])
        g.ln_s(e.link, e.path)
    elif e.new is None:
        g.rm_f(e.path)
    else:
        g.mkdir_p(e.path.rsplit("/", 1)[0])
        g.write(e.path, e.new.encode())


def check_grub_cfg(text: str, root_uuid: str | None, lvm: bool = False) -> list[str]:
    """Every Linux entry boots root=UUID=<root> (an LVM root: its /dev/mapper name, which GRUB
    writes for LVM and which is the same under any bus) with no Xen console left. The kernel takes
    the last root= of a line."""
    problems = []
    entries = [ln.strip() for ln in text.splitlines() if re.match(r"\s*linux(16|efi)?\s", ln)]
    if not entries:
        problems.append("no 'linux' line in grub.cfg")
    for ln in entries:
        roots = re.findall(r"\broot=(\S+)", ln)
        last = roots[-1] if roots else None
        ok = (root_uuid is not None and last == f"UUID={root_uuid}") or \
             (lvm and last is not None and last.startswith("/dev/mapper/"))
        if not ok:
            problems.append(f"not root=UUID={root_uuid}: {ln}")
        if re.search(r"console=(hvc|xvc)0", ln):
            problems.append(f"Xen console left: {ln}")
    return problems


def apply(g, p: Plan, facts: dict, logger: logging.Logger | None = None) -> dict:
    """Apply the plan to the mounted, writable guest; returns what was done for the report."""
    logger = logger or log
    done: dict = {}
    for e in p.edits:
        logger.info("%s %s", e.action, e.path)
        apply_edit(g, e)
    for r in p.removals:
        logger.info("in guest: %s", " ".join(r.argv))
        out = guest_command(g, list(r.argv), limit=r.limit, what=" ".join(r.argv) + " in the guest")
        done.setdefault("removals", []).append({"command": " ".join(r.argv), "output": out[-2000:]})
    if p.initramfs.get("tool") == "initramfs-tools":
        listed = p.initramfs.get("list_build")
        with kernel.list_build(g, tuple(listed) if listed else None) as setting:
            done["initramfs"] = initramfs.ensure(g, p.initramfs["modules"], logger)
            if p.network.get("action") == "moved":
                # the initramfs's udev names NICs before / is mounted, with the .link files it was
                # built with: without ours the virtio NIC gets the default name (ens4), which the
                # real root's udev then keeps, and ifupdown waits for the old one
                for v in done["initramfs"]["kernels"]:
                    if v not in done["initramfs"]["rebuilt"]:
                        logger.info("in guest: update-initramfs -u -k %s (the NIC's .link file)", v)
                        guest_command(g, ["update-initramfs", "-u", "-k", v], limit=initramfs.UPDATE_LIMIT,
                                      what=f"update-initramfs -u -k {v} in the image")
                        done["initramfs"]["rebuilt"].append(v)
                        done["initramfs"].setdefault("rebuilt_for_link", []).append(v)
        if setting and done["initramfs"]["rebuilt"]:
            done["initramfs"]["setting"] = setting
    elif p.initramfs.get("tool") == "dracut":
        for k in facts["kernels"]:
            if k["vmlinuz"]:
                v = k["version"]
                guest_command(g, ["dracut", "-f", f"/boot/initramfs-{v}.img", v], limit=initramfs.UPDATE_LIMIT)
                done.setdefault("initramfs", {}).setdefault("rebuilt", []).append(v)
    root_uuid = facts["uuids"].get(facts["root"])
    if p.grub:
        if p.grub["install"]:
            # the builder's own install commands: BIOS on the disk, UEFI removable without NVRAM
            uefi = p.grub.get("target") == "x86_64-efi"
            cmd = bootloader.install_commands("uefi" if uefi else "bios",
                                              "" if uefi else bootloader.target_disk(g))[0]
            logger.info("in guest: %s", " ".join(cmd))
            guest_command(g, cmd, limit=GRUB_LIMIT)
        logger.info("in guest: update-grub")
        guest_command(g, ["update-grub"], limit=GRUB_LIMIT)
        cfg_path = "/boot/grub/grub.cfg" if g.is_file("/boot/grub/grub.cfg") else "/boot/grub2/grub.cfg"
        cfg = g.cat(cfg_path)
        problems = check_grub_cfg(cfg, root_uuid, lvm=bool(facts.get("root_is_lv")))
        entry = p.default_kernel.get("entry")
        if entry and entry.split(">")[-1] not in cfg:
            problems.append(f"GRUB_DEFAULT names {entry}, which the regenerated grub.cfg has no entry for")
        if problems:
            raise BuildError("the regenerated grub.cfg would not boot the converted guest:\n  "
                             + "\n  ".join(problems[:10]),
                             hint="check GRUB_DISABLE_LINUX_UUID and GRUB_CMDLINE_LINUX in the guest's "
                                  "/etc/default/grub and /etc/default/grub.d/")
        done["grub"] = {"config": cfg_path, "installed": p.grub["install"], "root": f"UUID={root_uuid}",
                        **({"target": p.grub["target"]} if p.grub["install"] else {})}
        efi = facts.get("esp_files") or {}
        if p.grub.get("target") == "x86_64-efi":
            done["grub"]["fallback_present"] = linux_facts.fallback_present(g, efi["fallback"])
            if not done["grub"]["fallback_present"]:
                raise BuildError(f"grub-install --removable left no \\EFI\\BOOT\\{efi['fallback']} on the ESP",
                                 hint="check that the guest's /boot/efi is its EFI system partition")
    return done
