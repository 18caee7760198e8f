"""Guest conversion: foreign VMs (Xen, VMware, Hyper-V, Parallels, VirtualBox) and container
root filesystems in, KVM guests out — on the same engine, export and boot proof as builds.

What is here: the input side, every input hostile until proven otherwise.

* ``disk/``: header parsers of our own (qcow2, vmdk, vhd, vhdx, vdi, parallels, ploop bundles),
  then ``qemu-img info -f FMT`` as a cross-check (``disk/check.py``);
* ``archive/``: our tar reader and the zip rules (OVA, container tarballs);
* ``ova.py``/``ovf.py``/``manifest.py``, ``vmx.py``, ``libvirt_xml.py``: descriptions to a
  ``model.SourceVM``; ``source.py`` classifies what the user gave and opens it;
* ``stages/import_.py``: the ``import`` stage; ``command.py``: ``ironforge convert``;
* ``stages/inspect.py``: read-only facts of the guest (``linux/facts.py``, ``windows.py``);
* ``stages/convert.py``: the fix-ups in one writable launch; ``linux/`` plans them by concern
  (``devices``, ``console``, ``tools``, ``network``; ``fixups`` merges and applies), ``windows.py``
  adds the foreign PV services to ``builder.windows.inject``'s edits.

After ``convert`` come the family-neutral ``drivers``, ``export`` and ``verify`` stages.
"""
