"""The bootstrap stage: its tarball read back with tarfile (no launch), its pin, its refusals."""

import logging
import tarfile

import pytest

from linux_bootstrap_support import build, engine, stages, variant

from builder.cache.store import Store
from builder.errors import BuildError
from builder.host.accel import Accel
from builder.recipe import load
from builder.stage import StageContext
from builder.stages import bootstrap


def _ctx(recipe, tmp_path, offline=False):
    return StageContext(recipe=recipe, accel=Accel("tcg", "test"), store=Store(tmp_path / "store"),
                        workdir=tmp_path / "work", log=logging.getLogger("test"), offline=offline)


def test_reads_only_build_facts():
    assert not any(k.startswith(("customize", "drivers", "disk", "verify")) for k in bootstrap.STAGE.reads)
    assert "build.packages" in bootstrap.STAGE.reads and "os.release" in bootstrap.STAGE.reads


def test_debian_13_i386_is_refused_before_any_download(tmp_path):
    r = variant("debian-13-amd64", arch="i386")
    (tmp_path / "work").mkdir()
    with pytest.raises(BuildError, match="no i386 kernel"):
        bootstrap.run(_ctx(r, tmp_path), {})
    assert not (tmp_path / "store" / "downloads").exists()


@pytest.mark.network
def test_pin_is_the_sha256_of_the_signed_inrelease(tmp_path):
    import hashlib
    import requests
    pins = bootstrap.pins(_ctx(load("debian-12-amd64"), tmp_path))
    body = requests.get("http://deb.debian.org/debian/dists/bookworm/InRelease", timeout=60).content
    assert pins["inrelease_sha256"] == hashlib.sha256(body).hexdigest()
    assert pins["suite"] == "bookworm"
    # the signed Date, handed back to run() for SOURCE_DATE_EPOCH
    assert pins["release_date"] and pins["release_date"].encode() in body


def _members(art):
    with tarfile.open(art.path("rootfs")) as t:
        names = set(t.getnames())
        status = t.extractfile("./var/lib/dpkg/status").read().decode()
        modules = t.extractfile("./etc/initramfs-tools/modules").read().decode()
        bash = t.extractfile("./usr/bin/bash").read(20)
        net = t.extractfile("./etc/systemd/network/80-ironforge-dhcp.network").read().decode()
    return names, status, modules, bash, net


@pytest.mark.network
@pytest.mark.parametrize("name,machine,kernel", [("debian-12-amd64", 0x3E, "linux-image-amd64"),
                                                  ("debian-12-i386", 0x03, "linux-image-686-pae")])
def test_tarball_holds_the_arch_kernel_boot_and_recipe_packages(name, machine, kernel):
    res = build(name)
    art = res.artifacts["bootstrap"]
    names, status, modules, bash, net = _members(art)
    assert int.from_bytes(bash[18:20], "little") == machine        # ELF e_machine
    installed = {s.split("\n", 1)[0].removeprefix("Package: ") for s in status.split("\n\n")
                 if "Status: install ok installed" in s}
    for p in (kernel, "grub-pc", "systemd-sysv", "udev", "initramfs-tools", "systemd-resolved",
              *load(name).get("build.packages")):
        assert p in installed, p
    for m in ("virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console"):
        assert m in modules.split()
    assert "./usr/share/initramfs-tools/modules.d/ironforge-virtio.conf" not in names
    assert "DHCP=yes" in net
    assert "./etc/systemd/system/multi-user.target.wants/systemd-networkd.service" in names
    assert art.data["source_date_epoch"] and art.data["inrelease_sha256"]


@pytest.mark.network
def test_rebuild_is_all_hits_hostname_reruns_the_disk_packages_rebuild_everything():
    r = load("debian-12-amd64")
    first = build(r)
    again = build(r)
    assert [s.hit for s in again.steps] == [True, True, True]
    assert [s.key for s in again.steps] == [s.key for s in first.steps]
    # the disk stage applies this recipe's file-only customizations: a new hostname re-runs it
    # (seconds), never the bootstrap
    other = variant("debian-12-amd64", customize__hostname="other")
    renamed = engine().plan(other, stages(other))
    assert [s.hit for s in renamed] == [True, False, False]
    assert renamed[1].reason == "customize.hostname changed"
    less = variant("debian-12-amd64", build__packages=["less"])
    changed = engine().plan(less, stages(less))
    assert [s.hit for s in changed] == [False, False, False]
    assert "build.packages changed" in changed[0].reason


def test_mmdebstrap_time_limit_from_option_or_environment(tmp_path, monkeypatch):
    from builder.errors import UsageError
    from builder.linux import mmdebstrap

    monkeypatch.delenv("IRONFORGE_MMDEBSTRAP_TIMEOUT", raising=False)
    ctx = _ctx(load("debian-12-amd64"), tmp_path)
    assert bootstrap._mmdebstrap_timeout(ctx) == mmdebstrap.DEFAULT_TIMEOUT
    monkeypatch.setenv("IRONFORGE_MMDEBSTRAP_TIMEOUT", "7200")
    assert bootstrap._mmdebstrap_timeout(ctx) == 7200
    ctx.options["mmdebstrap_timeout"] = 90
    assert bootstrap._mmdebstrap_timeout(ctx) == 90
    monkeypatch.setenv("IRONFORGE_MMDEBSTRAP_TIMEOUT", "forever")
    with pytest.raises(UsageError, match="forever"):
        bootstrap._mmdebstrap_timeout(_ctx(load("debian-12-amd64"), tmp_path))
