"""builder.exports.machine: the VM an export describes, from a recipe or a converted guest."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.exports import machine
from builder.recipe import Recipe
from converters.model import Nic, SourceDisk, SourceVM


def test_from_recipe_uses_the_verified_shape_and_fills_defaults():
    r = Recipe(name="r", path=None, values={"arch": "i386", "os": {"family": "debian", "release": "12"},
                                            "firmware": "uefi", "verify": {"memory": 3072}})
    m = machine.from_recipe(r)
    assert (m.name, m.memory_mib, m.vcpus, m.firmware, m.arch) == ("r", 3072, 1, "uefi", "i686")


def test_from_source_vm_keeps_the_guests_own_description():
    vm = SourceVM(name="web", vcpus=4, memory_mib=8192, firmware="uefi",
                  disks=[SourceDisk(path=Path("/x/d.vmdk"), format="vmdk")],
                  nics=[Nic(mac="52:54:00:00:00:01", model="vmxnet3"), Nic(mac=None, model="e1000")], origin="ova")
    m = machine.from_source_vm(vm)
    assert (m.name, m.vcpus, m.memory_mib, m.firmware, m.nics) == ("web", 4, 8192, "uefi", 2)


def test_bad_firmware_is_refused():
    with pytest.raises(ValueError):
        machine.Machine(name="x", vcpus=1, memory_mib=128, firmware="coreboot")
