"""One network stack on the boot path: enable links removed from a real tree on disk."""

import os
from pathlib import Path

from builder.linux import bootunits


def _enable(root: Path, unit: str, *targets: str) -> None:
    for t in targets:
        d = root / "etc/systemd/system" / f"{t}.wants"
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(f"/lib/systemd/system/{unit}", d / unit)


def test_networking_goes_when_networkd_is_enabled(tmp_path):
    _enable(tmp_path, "systemd-networkd.service", "multi-user.target")
    _enable(tmp_path, "networking.service", "multi-user.target", "network-online.target")
    _enable(tmp_path, "ssh.service", "multi-user.target")
    removed = bootunits.networkd_only(tmp_path)
    assert removed == {"networking.service": [
        "etc/systemd/system/multi-user.target.wants/networking.service",
        "etc/systemd/system/network-online.target.wants/networking.service"]}
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["ssh.service", "systemd-networkd.service"]
    assert not (tmp_path / "etc/systemd/system/network-online.target.wants/networking.service").is_symlink()


def test_without_networkd_ifupdown_is_left_alone(tmp_path):
    _enable(tmp_path, "networking.service", "multi-user.target")
    assert bootunits.networkd_only(tmp_path) == {}
    assert (tmp_path / "etc/systemd/system/multi-user.target.wants/networking.service").is_symlink()


def test_minimal_server_also_drops_the_e2scrub_reaper(tmp_path):
    _enable(tmp_path, "systemd-networkd.service", "multi-user.target")
    _enable(tmp_path, "networking.service", "multi-user.target")
    _enable(tmp_path, "e2scrub_reap.service", "multi-user.target")
    _enable(tmp_path, "ssh.service", "multi-user.target")
    removed = bootunits.minimal_server(tmp_path)
    assert sorted(removed) == ["e2scrub_reap.service", "networking.service"]
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["ssh.service", "systemd-networkd.service"]
