"""A small Debian 12 root filesystem for the customize tests, built once and cached: as a
tarball (``base_tree``: the host-side route, builder.linux.tree_edit) and as an image made
from it (``base_image``: the appliance route, the customize stage).

Not a product path (the real pipeline's bootstrap/disk stages belong elsewhere): just enough
of a Debian system (apt, passwd, sudo, locales, systemd's directories) for the customize
code to edit. The image has no partition table and no bootloader: the filesystem spans the disk.

Cached under $IRONFORGE_TEST_CACHE (default ~/.cache/ironforge-test), keyed by the command
that makes it, behind a file lock so parallel sessions share one build.
"""

from __future__ import annotations

from builder.cache.store import sha256_file  # noqa: F401  (re-exported for the tests)

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from builder.cache.store import file_lock
from shared_cache import cache_root

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# systemd is included so /etc/systemd/system/multi-user.target.wants exists as on a real image.
INCLUDE = ("passwd", "sudo", "locales", "systemd", "tzdata")
FS_SIZE = "1536M"   # room for the extra package the tests install


def _recipe_key() -> str:
    what = {"suite": SUITE, "mirror": MIRROR, "include": INCLUDE, "size": FS_SIZE, "v": 2}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _base_tar(root: Path) -> Path:
    out = root / "customize" / f"debian12-rootfs-{_recipe_key()}.tar"
    with file_lock(out.with_suffix(".tar.lock")):
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        # root mode: we are root here, so owners, modes and device nodes are real
        subprocess.run(["mmdebstrap", "--quiet", "--variant=apt", "--mode=root", "--format=tar",
                        "--include=" + ",".join(INCLUDE), SUITE, str(part), MIRROR], check=True)
        os.replace(part, out)
    return out


def base_tree(dest: Path, root: Path | None = None) -> Path:
    """The cached Debian 12 root, unpacked (as root, owners and modes kept) into ``dest``."""
    tar = _base_tar(cache_root() if root is None else root)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "--extract", f"--file={tar}", f"--directory={dest}", "--numeric-owner",
                    "--same-owner", "--preserve-permissions"], check=True)
    return dest


def base_image(root: Path | None = None) -> Path:
    """Path of a cached qcow2 holding one ext4 filesystem with a Debian 12 root; build if needed."""
    root = cache_root() if root is None else root
    out = root / "customize" / f"debian12-rootfs-{_recipe_key()}.qcow2"
    with file_lock(out.with_suffix(".lock")):
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
            tree = base_tree(Path(tmp) / "rootfs", root)
            raw = Path(tmp) / "rootfs.ext4"
            subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "root", "-d", str(tree),
                            str(raw), FS_SIZE], check=True)
            shutil.rmtree(tree)
            part = out.with_name(out.name + ".part")
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
                            str(part)], check=True)
            os.replace(part, out)
    return out


ROOT_PW = "root-Pa55-from-env-7c1f"
ALICE_PW = "alice-Pa55-from-file-93ab"
ALICE_KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly0000000000000000000 alice@laptop",
              "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQFakeSecondKey alice@desktop"]

# The smallest valid recipe head; customize tests add their [customize] table after it.
RECIPE_HEAD = """\
arch = "amd64"
[os]
family = "debian"
release = "12"
[build]
method = "bootstrap"
"""

# What both customize routes are checked with (the appliance's, tests/stages/test_customize.py;
# the host tree's, tests/linux/test_tree_edit.py): identity, a root password by environment, two
# users (one with sudo, keys and a password by file), files by source and by content with owners.
IDENTITY = """
[customize]
hostname = "forged"
timezone = "Europe/Paris"
locale = "en_US.UTF-8"
root_password = { env = "IRONFORGE_TEST_ROOT_PW" }
"""

ACCOUNTS_AND_FILES = f"""
[[customize.users]]
name = "alice"
sudo = true
groups = ["adm", "users"]
ssh_keys = {json.dumps(ALICE_KEYS)}
password = {{ file = "secrets/alice.pw" }}

[[customize.users]]
name = "dave"
shell = "/bin/sh"

[[customize.files]]
path = "/etc/motd"
source = "files/motd"
mode = "0600"
owner = "alice"

[[customize.files]]
path = "/opt/app/config.ini"
content = "[app]\\nname = forged\\n"
mode = "0640"
owner = "root:adm"
"""


def recipe_dir(tmp_path: Path, text: str) -> Path:
    """A recipe folder holding ``text`` as full.toml, with the secret and source files it names."""
    rdir = tmp_path / "recipes"
    (rdir / "secrets").mkdir(parents=True)
    (rdir / "files").mkdir()
    (rdir / "secrets" / "alice.pw").write_text(ALICE_PW + "\n")
    (rdir / "files" / "motd").write_text("Welcome to forged\n")
    (rdir / "full.toml").write_text(text)
    return rdir / "full.toml"
