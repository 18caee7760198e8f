"""The virtual machine an export describes (OVF envelope, libvirt domain, Vagrantfile)."""

from __future__ import annotations

import re
from dataclasses import dataclass

ARCH = {"amd64": "x86_64", "i386": "i686"}
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@dataclass(frozen=True)
class Machine:
    name: str
    vcpus: int
    memory_mib: int
    firmware: str            # "bios" | "uefi"
    arch: str = "x86_64"     # libvirt/QEMU spelling
    family: str = "debian"   # "debian" | "windows" | "linux" (a converted guest of unknown distro)
    nics: int = 1
    macs: tuple[str, ...] = ()   # per NIC, in order, where the source kept one (converted guests)

    def __post_init__(self) -> None:
        if self.firmware not in ("bios", "uefi"):
            raise ValueError(f"firmware {self.firmware!r}")
        # a manifest gives a list back; every MAC lands in an XML attribute and must be one
        object.__setattr__(self, "macs", tuple(self.macs))
        for m in self.macs:
            if m and not MAC.fullmatch(m):
                raise ValueError(f"MAC {m!r}")


def from_recipe(recipe) -> "Machine":
    """A built image: the machine shape it was boot-verified with (verify.memory/verify.cpus are the
    one place a recipe says how big its VM is) and the firmware it was made for. A loaded recipe
    has every default filled in; the settings table's defaults cover hand-made ones."""
    from builder.settings import SETTINGS

    def get(key):
        return recipe.get(key, next(s.default for s in SETTINGS if s.key == key))

    return Machine(name=recipe.name, vcpus=get("verify.cpus"), memory_mib=get("verify.memory"),
                   firmware=get("firmware"), arch=ARCH.get(get("arch"), "x86_64"), family=get("os.family"))


def from_source_vm(vm, *, name: str | None = None, arch: str = "x86_64", firmware: str | None = None,
                   family: str = "linux") -> "Machine":
    """A converted guest: what its own description said (converters.model.SourceVM, or its
    to_dict() as the import stage records it): vCPUs, memory, firmware and the NICs' MACs.
    A MAC that is not a plain unicast-looking one (hostile or odd input) is left out: libvirt
    then generates one."""
    get = (lambda k: vm[k]) if isinstance(vm, dict) else (lambda k: getattr(vm, k))
    nics = list(get("nics"))
    macs = []
    for n in nics:
        mac = str((n.get("mac") if isinstance(n, dict) else n.mac) or "").strip().lower().replace("-", ":")
        macs.append(mac if MAC.fullmatch(mac) and not int(mac[:2], 16) & 1 else "")
    return Machine(name=name or get("name"), vcpus=int(get("vcpus")), memory_mib=int(get("memory_mib")),
                   firmware=firmware or get("firmware"), arch=arch, family=family,
                   nics=max(1, len(nics)), macs=tuple(macs))
