"""Shared by tests/exports: a small source image, the CLI runner, the exported-set record."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL = ["qcow2", "raw", "vmdk", "ova", "vhdx", "vhd-azure", "vdi", "gce", "vagrant-libvirt", "libvirt"]
# not a whole number of MiB on purpose: vhd-azure must round it up, the others keep it
SIZE = (64 << 20) + (64 << 10)


@dataclass(frozen=True)
class Exported:
    src: Path
    dir: Path
    result: dict


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "builder.cli", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    if check and res.returncode != 0:
        raise AssertionError(f"ironforge {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


def make_source(path: Path, size: int = SIZE) -> Path:
    """A qcow2 with data at the start, in the middle and in its last (partial-MiB) 64 KiB."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), str(size)], check=True)
    middle = size // 2 & ~((1 << 20) - 1)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 3M", "-c", f"write -P 0xcd {middle} 1M",
                    "-c", f"write -P 0xef {size - (64 << 10)} 64k", str(path)], check=True, capture_output=True)
    return path
