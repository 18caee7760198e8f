"""The drivers stage on a real bootstrap image: a module missing from the initramfs gets added
and proven from the listing; a module no kernel has fails the build naming module and kernel."""

import re

import pytest

from linux_bootstrap_support import build, host_lsinitramfs, variant

from builder.errors import BuildError
from builder.host.accel import choose
from builder.host.guestfs_session import Drive, session
from builder.stages import drivers

pytestmark = pytest.mark.network

# virtio_balloon is a module in Debian's kernels but not one initramfs-tools' MODULES=most takes
EXTRA = "virtio_balloon"
BASE = ["virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console"]


def test_reads_only_drivers_keys():
    assert drivers.STAGE.reads == ("drivers",)


def test_default_image_needs_no_rebuild_and_reports_guest_facts():
    res = build("debian-12-amd64")
    d = res.artifacts["drivers"].data
    assert d["modules"] == BASE
    assert d["initramfs"]["rebuilt"] == [] and d["initramfs"]["added_to_config"] == []
    k = d["kernels"][0]
    assert sorted(d["initramfs"]["per_kernel"][k]["in_initramfs"]) == sorted(BASE)
    assert d["os_release"]["VERSION_CODENAME"] == "bookworm" and d["os_release"]["ID"] == "debian"
    names = {p["name"]: p for p in d["packages"]}
    assert names["linux-image-amd64"]["arch"] == "amd64" and names["openssh-server"]["version"]
    assert d["package_count"] == len(d["packages"]) > 100
    # proven from the listing the disk stage read back in its own launch: no launch here
    assert d["listing_read_by"] == "disk"
    # the disk stage's image is the backing file; this stage wrote only its own layer
    assert res.artifacts["drivers"].image.stat().st_size < res.artifacts["disk"].image.stat().st_size


# update-initramfs inside the TCG appliance runs thousands of short processes (module copying,
# depmod, compression): 5-15 minutes on a shared 2-core host, hence slow (make test-slow).
@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_missing_module_is_added_rebuilt_and_proven(tmp_path):
    res = build(variant("debian-12-amd64", drivers__modules=BASE + [EXTRA]))
    assert [s.hit for s in res.steps][:2] == [True, True]     # only drivers re-ran
    d = res.artifacts["drivers"].data
    k = d["kernels"][0]
    assert d["listing_read_by"] == "drivers"      # the disk stage's listing lacked EXTRA
    assert d["initramfs"]["added_to_config"] == [EXTRA] and d["initramfs"]["rebuilt"] == [k]
    assert EXTRA in d["initramfs"]["per_kernel"][k]["in_initramfs"]
    # independent read-back: the config file and the host's lsinitramfs of the new initrd
    with session([Drive(res.artifacts["drivers"].image, "qcow2", readonly=True)], choose(),
                 what="test read-back") as g:
        g.mount_ro(g.inspect_os()[0], "/")
        conf = g.cat("/etc/initramfs-tools/modules")
        listing = host_lsinitramfs(g.read_file(f"/boot/initrd.img-{k}"))
    assert re.search(rf"^{EXTRA}$", conf, re.M)
    assert any(p.endswith(f"/{EXTRA}.ko") or f"/{EXTRA}.ko." in p for p in listing)


def test_impossible_module_fails_naming_module_and_kernel():
    with pytest.raises(BuildError) as e:
        build(variant("debian-12-amd64", drivers__modules=BASE + ["no_such_driver_xyz"]))
    assert "no_such_driver_xyz" in e.value.message and re.search(r"kernel 6\.\S+-amd64", e.value.message)
    assert "drivers.modules" in e.value.hint


def test_initramfs_listing_on_the_host_matches_the_guests_own():
    """The listing the disk stage recorded, the host's lsinitramfs and the guest's own agree."""
    from builder.linux import initramfs
    res = build("debian-12-amd64")
    k = res.artifacts["drivers"].data["kernels"][0]
    recorded = set(res.artifacts["disk"].data["image_report"]["modules"][k]["initramfs"])
    with session([Drive(res.artifacts["drivers"].image, "qcow2", readonly=True)], choose(),
                 what="test listing") as g:
        g.mount_ro(g.inspect_os()[0], "/")
        host = initramfs.listing(g, k)
        guest = initramfs.module_names(g.command_lines(["lsinitramfs", f"/boot/initrd.img-{k}"]))
    assert host == guest == recorded and set(BASE) <= host and len(host) > 100
