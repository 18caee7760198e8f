"""Guest conversion (Xen, VMware, Hyper-V, Parallels, VirtualBox, containers) to KVM.

Conversion lands in a later issue; shared pieces (safe image probing, virtio injection)
live in :mod:`builder` until then.
"""
