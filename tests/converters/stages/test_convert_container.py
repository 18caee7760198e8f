"""A container root filesystem (tests/container_fixtures.py: ironforge's Debian 12 bootstrap tree
with the kernel, GRUB, initramfs-tools, fstab and network configuration removed, dpkg's records
included) made into a bootable KVM guest by ``ironforge convert``: the kernel and GRUB come from
the Debian archive through apt on the host (signature-checked), are installed by the guest's own
dpkg in the appliance, and the result is read back in one launch and boot-verified.

Cost on a cold machine (the bootstrap tarballs already cached by the image tests): the fixture is
a few seconds of tar filtering; the i386 conversion (apt ~10 s, one launch with dpkg,
update-initramfs and GRUB) and its read-back; one boot. The amd64 container (GPT, from a recipe
with build.method = "convert") is under slow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from container_fixtures import CONTAINER_MACHINE_ID, container
from linux_bootstrap_support import host_lsinitramfs

from builder.host.accel import choose
from builder.host.guestfs_session import Drive, session
from converters.linux import kernel

REPO = Path(__file__).resolve().parents[3]
# dpkg and update-initramfs under TCG: ~10 min on a quiet 2-core host, far more on a loaded one
pytestmark = pytest.mark.timeout(5400)
VIRTIO = ("virtio_blk", "virtio_pci", "virtio_net", "virtio_scsi")


def cli(*args, cache: Path, out: Path, timeout=5400):
    env = {**os.environ, "IRONFORGE_CACHE": str(cache), "IRONFORGE_OUTPUT": str(out)}
    return subprocess.run([sys.executable, "-m", "builder.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def convert(src: Path, d: Path, *args) -> dict:
    cache, out = d / "cache", d / "output"
    r = cli("convert", "--no-verify", "--json", *args, src, cache=cache, out=out)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads(r.stdout)
    manifest = json.loads((Path(res["output"]) / "manifest.json").read_text())
    return {"res": res, "manifest": manifest, "image": Path(res["image"]), "cache": cache, "out": out}


def readback(image: Path) -> dict:
    """Everything the assertions need, in ONE read-only launch on the published image."""
    f: dict = {}
    with session([Drive(image, "qcow2", readonly=True)], choose(), what="container read-back") as g:
        f["part_table"] = g.part_get_parttype("/dev/sda")
        f["partitions"] = g.list_partitions()
        root = g.inspect_os()[0]
        f["root_uuid"] = g.vfs_uuid(root)
        f["root_type"] = g.vfs_type(root)
        g.mount_ro(root, "/")
        for p in ("/etc/fstab", "/etc/default/grub", "/boot/grub/grub.cfg", "/etc/initramfs-tools/modules",
                  "/etc/machine-id", "/etc/network/interfaces", "/etc/systemd/network/80-ironforge-dhcp.network",
                  "/var/lib/dpkg/status"):
            f[p] = g.cat(p) if g.is_file(p) else None
        f["networkd_enabled"] = g.is_symlink("/etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
        f["debs_left"] = g.exists("/var/cache/ironforge-debs")
        f["first_build_left"] = [p for p in (kernel.FIRST_BUILD_CONF, kernel.FIRST_BUILD_MODULES) if g.exists(p)]
        f["boot"] = sorted(g.ls("/boot"))
        f["grub_core"] = g.is_file("/boot/grub/i386-pc/core.img")
        f["initramfs"] = {n[len("initrd.img-"):]: host_lsinitramfs(g.read_file(f"/boot/{n}"))
                          for n in f["boot"] if n.startswith("initrd.img-")}
        g.umount_all()
    return f


def installed(status: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^Package: (\S+)\n(?:.+\n)*?Status: install ok installed$",
                                            status, re.M)}


@pytest.fixture(scope="module")
def i386(tmp_path_factory):
    src = container("i386")
    c = convert(src, tmp_path_factory.mktemp("container-i386"), "--name", "ct12-i386")
    c["src"] = src
    c["readback"] = readback(c["image"])
    yield c
    shutil.rmtree(c["cache"].parent, ignore_errors=True)    # a cold run's disk: see test_two_machines


def test_fixture_is_a_container_without_kernel_or_bootloader(i386):
    with tarfile.open(i386["src"]) as t:
        names = t.getnames()
        status = t.extractfile("./var/lib/dpkg/status").read().decode()
    assert not [n for n in names if re.match(r"\./boot/.+|\./(usr/)?lib/modules/.+", n)]
    assert not {p for p in installed(status) if p.startswith(("linux-image", "grub", "initramfs-tools"))}
    assert "systemd-sysv" in installed(status)


def test_disk_layout_and_fstab_by_uuid(i386):
    f = i386["readback"]
    assert f["part_table"] == "msdos" and f["partitions"] == ["/dev/sda1"] and f["root_type"] == "ext4"
    fstab = [ln.split() for ln in f["/etc/fstab"].splitlines() if ln.strip() and not ln.startswith("#")]
    assert fstab[0][:3] == [f"UUID={f['root_uuid']}", "/", "ext4"], fstab
    assert i386["manifest"]["conversion"]["disk"]["root_uuid"] == f["root_uuid"]


def test_kernel_initramfs_and_grub_installed_by_the_guests_dpkg(i386):
    f = i386["readback"]
    pkgs = installed(f["/var/lib/dpkg/status"])
    assert {"linux-image-686-pae", "initramfs-tools", "grub-pc"} <= pkgs, sorted(pkgs)
    kernels = [n[len("vmlinuz-"):] for n in f["boot"] if n.startswith("vmlinuz-")]
    assert len(kernels) == 1 and kernels[0].endswith("-686-pae") and list(f["initramfs"]) == kernels
    for m in VIRTIO:
        assert re.search(rf"^{m}$", f["/etc/initramfs-tools/modules"], re.M)
        assert any(re.search(rf"/{m}\.ko(\.xz|\.zst)?$", p) for p in f["initramfs"][kernels[0]]), m
    assert f["grub_core"] and not f["debs_left"]
    linux = [ln for ln in f["/boot/grub/grub.cfg"].splitlines() if re.match(r"\s*linux\s", ln)]
    assert linux and all(f"root=UUID={f['root_uuid']}" in ln and "console=ttyS0,115200" in ln for ln in linux)
    conv = i386["manifest"]["conversion"]
    assert conv["from"] == "container" and conv["kernel_package"] == "linux-image-686-pae"
    assert any(p.startswith("linux-image-686-pae ") for p in conv["packages"]["installed"])
    # built once, after the virtio modules were configured (the kernel's own hook was skipped)
    assert conv["done"]["initramfs_built"] == kernels
    # ... as MODULES=list: virtio and the root filesystem, not every disk driver the kernel has;
    # the setting was for that build only, so the guest's next update-initramfs is its default
    assert conv["done"]["first_initramfs"] == {"modules": "list", "extra": ["ext4"]}
    listing = f["initramfs"][kernels[0]]
    assert any(re.search(r"/ext4\.ko(\.xz|\.zst)?$", p) for p in listing)
    assert not [p for p in listing if re.search(r"/(ahci|nvme|mptspi|hv_storvsc)\.ko", p)]
    assert f["first_build_left"] == []


def test_identity_reset_and_dhcp_networking(i386):
    f = i386["readback"]
    assert f["/etc/machine-id"] == "" and CONTAINER_MACHINE_ID.strip() not in f["/etc/machine-id"]
    assert "DHCP=yes" in f["/etc/systemd/network/80-ironforge-dhcp.network"] and f["networkd_enabled"]
    assert "GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200\"" in f["/etc/default/grub"]


def test_inspect_and_recipe_take_the_containers_arch(i386):
    man = i386["manifest"]
    facts = man["inputs"]["inspect"]["facts"]
    assert (facts["type"], facts["distro"], facts["release"], facts["dpkg_arch"]) == ("rootfs", "debian", "12", "i386")
    assert facts["kernels"] == {"vmlinuz": [], "modules": []}
    assert man["recipe"]["arch"] == "i686"
    assert [s["name"] for s in man["stages"]] == ["import", "inspect", "convert", "drivers", "export"]


@pytest.mark.boot
def test_converted_i386_container_boots(i386, tmp_path):
    r = cli("verify", "--json", "--evidence-dir", tmp_path / "ev", i386["image"], cache=i386["cache"],
            out=i386["out"], timeout=3600)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    log = (tmp_path / "ev" / i386["image"].stem / "serial.log").read_text(errors="replace")
    serial_log_shows_a_vm(log)


def serial_log_shows_a_vm(log: str) -> None:
    cmdline = next(ln for ln in log.splitlines() if "Kernel command line:" in ln)
    assert "root=UUID=" in cmdline and "console=ttyS0" in cmdline
    assert "[vda]" in log and "login:" in log


def test_a_non_debian_container_is_refused_with_the_reason(tmp_path):
    import converters_support as S
    ct = S.tar_with(tmp_path / "alpine.tar", [(S.member("./etc", tarfile.DIRTYPE), None),
                                              (S.member("./etc/os-release"), b'ID=alpine\nPRETTY_NAME="Alpine Linux v3.19"\n')])
    r = cli("convert", "--no-verify", ct, cache=tmp_path / "cache", out=tmp_path / "out", timeout=600)
    assert r.returncode == 2, r.stderr
    assert "Alpine Linux v3.19" in r.stderr and "only into Debian containers" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.boot
@pytest.mark.timeout(7200)
def test_amd64_container_from_a_recipe_gpt_boots(tmp_path):
    """build.method = "convert" with a GPT disk: BIOS boot partition + root, linux-image-amd64."""
    src = container("amd64")
    recipe = tmp_path / "ct12-amd64.toml"
    recipe.write_text('arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n[build]\nmethod = "convert"\n'
                      f'[source.image]\npath = "{src}"\n[disk]\npartition_table = "gpt"\n')
    cache, out = tmp_path / "cache", tmp_path / "output"
    r = cli("build", "--json", recipe, cache=cache, out=out, timeout=7200)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-4000:])
    man = json.loads(next(out.rglob("manifest.json")).read_text())
    conv = man["conversion"]
    assert conv["kernel_package"] == "linux-image-amd64" and conv["disk"]["partition_table"] == "gpt"
    assert [p["name"] for p in conv["disk"]["partitions"]] == ["bios_boot", "root"]
    assert any(s["name"] == "verify" for s in man["stages"]), man["stages"]
