"""The image report's check: the drivers stage skips its launch only when the listing shows
every wanted module in every kernel (the report itself is read from real images in
tests/stages/test_drivers.py and test_customize.py)."""

from builder.linux import imagereport


def report(**kernels):
    return {"version": imagereport.VERSION, "kernels": sorted(kernels),
            "modules": {k: {"initramfs": inside, "builtin": builtin}
                        for k, (inside, builtin) in kernels.items()},
            "facts": {"package_count": 1}}


def test_all_present_gives_the_per_kernel_result():
    r = report(**{"6.1.0-1-amd64": (["virtio_blk", "virtio_net"], ["virtio_pci"])})
    out = imagereport.check(r, ["virtio_pci", "virtio-blk", "virtio_net"])
    assert out == {"kernels": ["6.1.0-1-amd64"], "added_to_config": [], "rebuilt": [],
                   "per_kernel": {"6.1.0-1-amd64": {"in_initramfs": ["virtio-blk", "virtio_net"],
                                                    "builtin": ["virtio_pci"]}}}


def test_one_kernel_lacking_one_module_means_launch():
    r = report(**{"6.1.0-1-amd64": (["virtio_blk"], []), "6.1.0-2-amd64": ([], [])})
    assert imagereport.check(r, ["virtio_blk"]) is None


def test_reports_from_elsewhere_are_not_trusted():
    good = report(**{"6.1.0-1-amd64": (["virtio_blk"], [])})
    assert imagereport.usable(good)
    assert not imagereport.usable(None)
    assert not imagereport.usable({**good, "version": imagereport.VERSION + 1})
    assert not imagereport.usable({**good, "kernels": []})          # nothing listed: no proof
    assert not imagereport.usable({**good, "kernels": ["6.1.0-9-amd64"]})  # kernel not listed
