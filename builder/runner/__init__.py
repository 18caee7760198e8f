"""Running guests under QEMU and proving that they boot.

machine:      MachineSpec -> QEMU command line (the only place that spells QEMU flags); QemuMachine, the
              process + QMP wrapper that never lets QEMU outlive it.
marker:       the IRONFORGE-READY line a guest prints, and its parser.
waiter:       serial log follower + boot state machine (ready / panic / stall / timeout / exited).
guest_probe:  the shell probe and its systemd unit; inject: puts them into a throw-away overlay.
checks:       arch, virtio-root, virtio-drivers, systemd on the marker's facts.
verify:       verify_image / verify_fleet -> VerifyResult; report: table, JUnit, JSON.
interactive:  run_interactive (ironforge run); ppm: screendump PPM -> PNG without PIL.
tinyguest:    a tiny guest from the host kernel + busybox for self-tests and benchmarks.
"""
