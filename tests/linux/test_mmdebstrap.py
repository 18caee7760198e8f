from pathlib import Path

from builder.linux import mmdebstrap
from builder.settings import VIRTIO_MODULES


def _spec(**kw):
    base = dict(suite="bookworm", arch="i386", variant="apt", packages=("linux-image-686-pae", "sudo"),
                mirror="http://deb.debian.org/debian", initramfs_modules=VIRTIO_MODULES)
    base.update(kw)
    return mmdebstrap.Spec(**base)


def test_command_names_suite_arch_variant_packages_mirror_and_target():
    cmd = mmdebstrap.command(_spec(), Path("/x/rootfs.tar"))
    assert cmd[-3:] == ["bookworm", "/x/rootfs.tar", "http://deb.debian.org/debian"]
    assert "--variant=apt" in cmd and "--architectures=i386" in cmd and "--format=tar" in cmd
    assert "--include=linux-image-686-pae,sudo" in cmd
    assert f"--keyring={mmdebstrap.KEYRING}" in cmd


def test_virtio_modules_go_in_before_the_kernel_and_end_in_etc():
    cmd = mmdebstrap.command(_spec(), Path("/x/r.tar"))
    ess = next(c for c in cmd if c.startswith("--essential-hook="))
    for m in VIRTIO_MODULES:
        assert m in ess
    cust = next(c for c in cmd if c.startswith("--customize-hook="))
    assert "/etc/initramfs-tools/modules" in cust and "systemctl enable systemd-networkd" in cust


def test_apt_cache_hooks_only_when_asked():
    plain = mmdebstrap.command(_spec(), Path("/x/r.tar"))
    assert not any("sync-in" in c for c in plain)
    cached = mmdebstrap.command(_spec(apt_cache=Path("/c/apt")), Path("/x/r.tar"))
    assert "--skip=essential/unlink" in cached
    assert any(c.startswith("--setup-hook=sync-in /c/apt ") for c in cached)
    assert any(c.startswith("--customize-hook=sync-out /var/cache/apt/archives /c/apt") for c in cached)


def test_source_date_epoch_from_env_wins_over_release_date():
    s = _spec(source_date_epoch=1700000000)
    assert mmdebstrap.environment(s, {})["SOURCE_DATE_EPOCH"] == "1700000000"
    assert mmdebstrap.environment(s, {"SOURCE_DATE_EPOCH": "5"})["SOURCE_DATE_EPOCH"] == "5"
    assert "SOURCE_DATE_EPOCH" not in mmdebstrap.environment(_spec(), {})


def test_failure_quotes_the_last_lines(tmp_path, monkeypatch):
    # a real mmdebstrap run that fails at once: an unknown variant
    import pytest
    from builder.errors import BuildError
    with pytest.raises(BuildError) as e:
        mmdebstrap.run(_spec(variant="no-such-variant"), tmp_path / "r.tar")
    assert "mmdebstrap failed" in e.value.message and "invalid variant" in e.value.message
