"""Make sure named kernel modules are in the initramfs of every installed kernel (Debian's
initramfs-tools), and prove it from the initramfs listing rather than from the config.

A module counts as present when the initramfs holds its ``.ko`` (any compression) or the kernel
has it built in (``modules.builtin``). A name the kernel does not know at all fails before any
rebuild; a name that is still absent after the rebuild fails naming module and kernel.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field

from builder.errors import BuildError
from builder.host import proc as hostproc
from builder.host.guestfs_session import guest_command

log = logging.getLogger("ironforge.linux.initramfs")

# Listing a ~40 MB initramfs takes seconds natively and 10-20 s in the appliance under TCG;
# update-initramfs there took up to ~20 min on a loaded 2-core host. Limits far above that, so
# only a hang (or a crafted archive) reaches them.
HOST_LIST_TIMEOUT = 300
GUEST_LIST_LIMIT = 1800
UPDATE_LIMIT = 3600

MODULES_FILE = "/etc/initramfs-tools/modules"
_KO = re.compile(r"(?:^|/)([^/]+)\.ko(?:\.(?:xz|zst|gz))?$")


def norm(name: str) -> str:
    """Module names treat '-' and '_' alike (kmod does); compare in one spelling."""
    return name.strip().replace("-", "_")


def module_names(paths) -> set[str]:
    """Module names from .ko paths (a listing, modules.builtin, modules.dep keys)."""
    out = set()
    for p in paths:
        m = _KO.search(p.strip().split(":", 1)[0])
        if m:
            out.add(norm(m.group(1)))
    return out


def configured(text: str) -> list[str]:
    """Module names listed in an initramfs-tools modules file (first word of each line)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(norm(line.split()[0]))
    return out


def with_modules(text: str, modules: list[str]) -> tuple[str, list[str]]:
    """``text`` with the modules it lacks appended; and which were added."""
    have = set(configured(text))
    added = [m for m in modules if norm(m) not in have]
    if not added:
        return text, []
    if text and not text.endswith("\n"):
        text += "\n"
    text += "# added by ironforge (drivers stage)\n" + "".join(f"{m}\n" for m in added)
    return text, added


@dataclass
class KernelModules:
    version: str
    present: list[str] = field(default_factory=list)     # .ko in the initramfs
    builtin: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def installed_kernels(g) -> list[str]:
    """Kernel versions with modules and an initrd, sorted."""
    out = []
    if not g.is_dir("/lib/modules"):       # a kernel-less image (a container's root, say)
        return out
    for v in sorted(g.ls("/lib/modules")):
        if g.is_dir(f"/lib/modules/{v}") and g.is_file(f"/boot/initrd.img-{v}", followsymlinks=True):
            out.append(v)
    return out


def read_optional(g, path: str) -> str:
    return g.cat(path) if g.is_file(path, followsymlinks=True) else ""


def builtin_modules(g, version: str) -> set[str]:
    """Modules compiled into kernel ``version`` (its modules.builtin)."""
    return module_names(read_optional(g, f"/lib/modules/{version}/modules.builtin").splitlines())


def listing(g, version: str) -> set[str]:
    """Module names in /boot/initrd.img-<version>.

    Listed by the host's lsinitramfs on a downloaded copy when the host has it (native speed:
    decompressing ~40 MB of zstd under TCG costs 10-20 s), else by the guest's own."""
    path = f"/boot/initrd.img-{version}"
    host = shutil.which("lsinitramfs")
    if host:
        with tempfile.TemporaryDirectory(prefix="ironforge-initrd-") as tmp:
            local = os.path.join(tmp, "initrd.img")
            g.download(path, local)
            res = hostproc.run([host, local], what=f"lsinitramfs {path}", timeout=HOST_LIST_TIMEOUT,
                               check=False)
            if res.returncode == 0 and res.stdout.strip():
                return module_names(res.stdout.splitlines())
            log.debug("host lsinitramfs failed on %s (%s); listing inside the guest", path,
                      res.stderr.strip()[-200:])
    return module_names(guest_command(g, ["lsinitramfs", path], limit=GUEST_LIST_LIMIT,
                                      what=f"lsinitramfs {path} in the image").splitlines())


def classify(version: str, modules: list[str], inside: set[str], builtin: set[str]) -> KernelModules:
    """Each wanted module as built in, in the initramfs listing, or missing."""
    km = KernelModules(version)
    for m in modules:
        n = norm(m)
        if n in builtin:
            km.builtin.append(m)
        elif n in inside:
            km.present.append(m)
        else:
            km.missing.append(m)
    return km


def check(g, version: str, modules: list[str], known: dict[str, tuple[set, set]]) -> KernelModules:
    builtin, _avail = known[version]
    return classify(version, modules, listing(g, version), builtin)


def ensure(g, modules: list[str], logger: logging.Logger | None = None) -> dict:
    """Every module in every kernel's initramfs, rebuilding only if one was missing."""
    logger = logger or log
    kernels = installed_kernels(g)
    if not kernels:
        raise BuildError("no installed kernel with an initramfs in the image (/lib/modules/<v> and "
                         "/boot/initrd.img-<v>)", hint="the image needs a linux-image package")
    known: dict[str, tuple[set, set]] = {}
    for v in kernels:
        builtin = builtin_modules(g, v)
        avail = module_names(read_optional(g, f"/lib/modules/{v}/modules.dep").splitlines())
        unknown = [m for m in modules if norm(m) not in builtin and norm(m) not in avail]
        if unknown:
            raise BuildError(f"kernel {v} has no module {', '.join(unknown)} (neither built in nor "
                             "in modules.dep)",
                             hint="check the names in drivers.modules (e.g. virtio_blk)")
        known[v] = (builtin, avail)

    results = {v: check(g, v, modules, known) for v in kernels}
    added: list[str] = []
    rebuilt: list[str] = []
    need = [v for v, km in results.items() if km.missing]
    if need:
        missing = sorted({m for v in need for m in results[v].missing})
        text = read_optional(g, MODULES_FILE)
        new, added = with_modules(text, missing)
        if added:
            logger.info("adding %s to %s", ", ".join(added), MODULES_FILE)
            g.write(MODULES_FILE, new.encode())
        for v in need:
            logger.info("in guest: update-initramfs -u -k %s (missing: %s)", v,
                        ", ".join(results[v].missing))
            guest_command(g, ["update-initramfs", "-u", "-k", v], limit=UPDATE_LIMIT,
                          what=f"update-initramfs -u -k {v} in the image")
            rebuilt.append(v)
            results[v] = check(g, v, modules, known)
            if results[v].missing:
                raise BuildError(f"module {', '.join(results[v].missing)} still not in the "
                                 f"initramfs of kernel {v} after update-initramfs",
                                 hint=f"check {MODULES_FILE} and /etc/initramfs-tools/initramfs.conf "
                                      "in the image")
    for v, km in results.items():
        logger.info("kernel %s: initramfs has %s; built in: %s", v, ", ".join(km.present) or "-",
                    ", ".join(km.builtin) or "-")
    return {"kernels": kernels, "added_to_config": added, "rebuilt": rebuilt,
            "per_kernel": {v: {"in_initramfs": km.present, "builtin": km.builtin}
                           for v, km in results.items()}}
