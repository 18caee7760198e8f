"""Running guests under QEMU and proving that they boot.

machine:  MachineSpec -> QEMU command line (the only place that spells QEMU flags) and QemuMachine,
          the process + QMP control wrapper.
"""
