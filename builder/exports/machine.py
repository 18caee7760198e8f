"""The virtual machine an export describes (OVF envelope, libvirt domain, Vagrantfile)."""

from __future__ import annotations

from dataclasses import dataclass

ARCH = {"amd64": "x86_64", "i386": "i686"}


@dataclass(frozen=True)
class Machine:
    name: str
    vcpus: int
    memory_mib: int
    firmware: str            # "bios" | "uefi"
    arch: str = "x86_64"     # libvirt/QEMU spelling
    family: str = "debian"   # "debian" | "windows" | "linux" (a converted guest of unknown distro)
    nics: int = 1

    def __post_init__(self) -> None:
        if self.firmware not in ("bios", "uefi"):
            raise ValueError(f"firmware {self.firmware!r}")


def from_recipe(recipe) -> "Machine":
    """A built image: the machine shape it was boot-verified with (verify.memory/verify.cpus are the
    one place a recipe says how big its VM is) and the firmware it was made for. A loaded recipe
    has every default filled in; the settings table's defaults cover hand-made ones."""
    from builder.settings import SETTINGS

    def get(key):
        return recipe.get(key, next(s.default for s in SETTINGS if s.key == key))

    return Machine(name=recipe.name, vcpus=get("verify.cpus"), memory_mib=get("verify.memory"),
                   firmware=get("firmware"), arch=ARCH.get(get("arch"), "x86_64"), family=get("os.family"))


def from_source_vm(vm) -> "Machine":
    """A converted guest: what its own description said (converters.model.SourceVM)."""
    return Machine(name=vm.name, vcpus=vm.vcpus, memory_mib=vm.memory_mib, firmware=vm.firmware,
                   family="linux", nics=max(1, len(vm.nics)))
