"""Parsers and the config edit; the in-guest path runs for real in tests/stages/test_drivers.py."""

from builder.linux import initramfs


def test_module_names_from_listing_builtin_and_dep_lines():
    lines = [
        "usr/lib/modules/6.1.0-50-amd64/kernel/drivers/block/virtio_blk.ko",
        "usr/lib/modules/6.12.0-1-amd64/kernel/drivers/net/virtio_net.ko.xz",
        "usr/lib/modules/6.12.0-1-amd64/kernel/drivers/char/virtio_console.ko.zst",
        "usr/lib/modules/6.1.0-50-amd64/kernel/drivers/virtio",
        "kernel/drivers/scsi/virtio_scsi.ko: kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/hid/hid-generic.ko",
        "etc/modprobe.d",
    ]
    assert initramfs.module_names(lines) == {"virtio_blk", "virtio_net", "virtio_console",
                                             "virtio_scsi", "hid_generic"}


def test_configured_reads_first_words_and_skips_comments():
    text = "# comment\nvirtio_pci\n  virtio-blk  # trailing\nloop max_loop=8\n\n"
    assert initramfs.configured(text) == ["virtio_pci", "virtio_blk", "loop"]


def test_with_modules_appends_only_what_is_missing():
    text = "# List of modules\nvirtio_pci"
    new, added = initramfs.with_modules(text, ["virtio_pci", "virtio_balloon", "virtio-rng"])
    assert added == ["virtio_balloon", "virtio-rng"]
    assert new.endswith("virtio_pci\n# added by ironforge (drivers stage)\nvirtio_balloon\nvirtio-rng\n")
    again, none = initramfs.with_modules(new, ["virtio_balloon", "virtio_rng"])
    assert again == new and none == []
