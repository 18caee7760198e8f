"""Run mmdebstrap into a tarball: the Debian root filesystem of a bootstrap build.

Hooks run inside mmdebstrap's own chroot (it sets up and tears down /proc, /sys, /dev), so
nothing here mounts anything on the host:

* essential hook (after Essential: yes, before the kernel and initramfs-tools are installed): a
  modules list for initramfs-tools naming the virtio drivers, so the kernel's postinst builds
  the initramfs with them once, natively, instead of a rebuild later inside the slow appliance;
* customize hook: move that list into /etc/initramfs-tools/modules (the admin's file, which
  future kernel updates read), enable systemd-networkd with a DHCP .network for en*/eth*.

SOURCE_DATE_EPOCH: taken from the environment when set; otherwise the caller passes the
signed Release's ``Date`` (so a rebuild from the same archive state gets the same timestamps,
and the cache pin, the sha256 of InRelease, changes exactly when that date does).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError, ToolTimeout
from builder.host import proc as hostproc
from builder.host import tools

log = logging.getLogger("ironforge.linux.mmdebstrap")

# A bootstrap takes 2-10 min on a normal link; a stalled mirror must not hang a scheduled
# rebuild forever (IRONFORGE_MMDEBSTRAP_TIMEOUT or the engine option "mmdebstrap_timeout"
# changes it, see builder.stages.bootstrap).
DEFAULT_TIMEOUT = 3600.0

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_MODULES_D = "/usr/share/initramfs-tools/modules.d/ironforge-virtio.conf"

NETWORK_UNIT_PATH = "/etc/systemd/network/80-ironforge-dhcp.network"
# ifupdown (if a recipe installs it) keeps only "lo" in /etc/network/interfaces, so it and
# networkd never manage the same link.
NETWORK_UNIT = """\
# Written by ironforge: DHCP on every wired NIC (virtio-net shows up as ens*/enp*).
[Match]
Name=en* eth*

[Network]
DHCP=yes
"""


@dataclass(frozen=True)
class Spec:
    suite: str                           # bookworm | trixie
    arch: str                            # Debian word: amd64 | i386
    variant: str                         # mmdebstrap --variant
    packages: tuple[str, ...]            # --include
    mirror: str
    initramfs_modules: tuple[str, ...] = ()
    source_date_epoch: int | None = None
    keyring: Path = KEYRING
    apt_cache: Path | None = None        # persistent /var/cache/apt/archives (sync-in/out)
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def _essential_hook(spec: Spec) -> str:
    lines = "".join(f"{m}\\n" for m in spec.initramfs_modules)
    return (f'mkdir -p "$1"{os.path.dirname(_MODULES_D)} && '
            f'printf "{lines}" > "$1"{_MODULES_D}')


def _customize_hook(spec: Spec) -> str:
    parts = []
    if spec.initramfs_modules:
        # append each module once, then drop the temporary list: the initramfs already has them
        parts.append(
            f'for m in {" ".join(shlex.quote(m) for m in spec.initramfs_modules)}; do '
            'grep -qx "$m" "$1"/etc/initramfs-tools/modules || echo "$m" >> "$1"/etc/initramfs-tools/modules; '
            f'done; rm -f "$1"{_MODULES_D}')
    parts.append(f'mkdir -p "$1"{os.path.dirname(NETWORK_UNIT_PATH)} && '
                 f'printf %s {shlex.quote(NETWORK_UNIT)} > "$1"{NETWORK_UNIT_PATH}')
    parts.append('chroot "$1" systemctl enable systemd-networkd.service')
    return " && ".join(parts)


def command(spec: Spec, target: Path) -> list[str]:
    """The mmdebstrap command line for ``spec`` writing ``target`` (a .tar)."""
    cmd = [tools.require("mmdebstrap"), f"--variant={spec.variant}", f"--architectures={spec.arch}",
           "--components=main", f"--keyring={spec.keyring}", "--format=tar",
           f"--include={','.join(spec.packages)}",
           f"--essential-hook={_essential_hook(spec)}" if spec.initramfs_modules else None,
           f"--customize-hook={_customize_hook(spec)}"]
    if spec.apt_cache is not None:
        # Keep the .debs across builds (the man page's recipe): essential debs are not unlinked,
        # the cache goes in before any download and comes back out (pruned by autoclean to what
        # the current lists still name) before mmdebstrap's cleanup empties the chroot's copy.
        cache = shlex.quote(str(spec.apt_cache))
        cmd += ["--skip=essential/unlink",
                f'--setup-hook=mkdir -p {cache} "$1"/var/cache/apt/archives/',
                f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
                '--customize-hook=chroot "$1" apt-get -q autoclean',
                f"--customize-hook=sync-out /var/cache/apt/archives {cache}"]
    cmd += list(spec.extra_args)
    cmd += [spec.suite, str(target), spec.mirror]
    return [c for c in cmd if c is not None]


def environment(spec: Spec, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.setdefault("DEBIAN_FRONTEND", "noninteractive")
    if "SOURCE_DATE_EPOCH" not in env and spec.source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(int(spec.source_date_epoch))
    # the host's locale may not exist inside the chroot: keep apt and perl quiet about it
    env["LC_ALL"] = "C.UTF-8"
    return env


def run(spec: Spec, target: Path, logger: logging.Logger | None = None, tail: int = 40,
        timeout: float = DEFAULT_TIMEOUT) -> None:
    """Run mmdebstrap; progress lines go to the log at INFO; failure quotes the last lines.

    It runs in its own process group that dies with us (PDEATHSIG) and is killed whole on every
    way out: success, failure, Ctrl-C, or ``timeout`` seconds."""
    logger = logger or log
    if spec.keyring != KEYRING:
        with _readable_copy(spec.keyring) as ring:
            return _run(dataclasses.replace(spec, keyring=ring), target, logger, tail, timeout)
    return _run(spec, target, logger, tail, timeout)


@contextlib.contextmanager
def _readable_copy(keyring: Path):
    """apt checks signatures as its unprivileged _apt user, who cannot read a keyring kept in a
    private folder (a recipe's, under a 0700 home): it gets a world-readable copy of the public
    keys in a fresh directory, removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="ironforge-keyring-"))
    try:
        d.chmod(0o755)
        copy = d / (keyring.name if keyring.suffix in (".gpg", ".asc") else "keyring.gpg")
        shutil.copyfile(keyring, copy)
        copy.chmod(0o644)
        yield copy
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _run(spec: Spec, target: Path, logger: logging.Logger, tail: int, timeout: float) -> None:
    cmd = command(spec, target)
    logger.info("mmdebstrap %s %s (%s, %d packages)", spec.suite, spec.arch, spec.variant,
                len(spec.packages))
    logger.debug("command: %s", shlex.join(cmd))
    last: collections.deque[str] = collections.deque(maxlen=tail)
    proc = hostproc.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", env=environment(spec), stdin=subprocess.DEVNULL)
    with hostproc.bounded(proc, timeout) as deadline:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()[:2000]
            if not line:
                continue
            last.append(line)
            # mmdebstrap's own progress lines start with "I:"; apt/dpkg chatter goes to DEBUG
            if line.startswith(("I:", "W:", "E:")):
                logger.info("mmdebstrap: %s", line)
            else:
                logger.debug("mmdebstrap: %s", line)
        rc = proc.wait()
    if deadline.expired and rc != 0:   # (one that finished just as the watchdog fired counts)
        with_tail = "\n".join(f"  {ln}" for ln in last)
        raise ToolTimeout(f"mmdebstrap for {spec.suite}/{spec.arch}: still running after {timeout:.0f} s; "
                          f"stopped it; last lines:\n{with_tail}",
                          hint=f"is {spec.mirror} reachable and fast? A slow link needs a longer limit "
                               "(IRONFORGE_MMDEBSTRAP_TIMEOUT=seconds, or the engine option mmdebstrap_timeout)")
    if rc != 0:
        with_tail = "\n".join(f"  {ln}" for ln in last)
        raise BuildError(f"mmdebstrap failed (exit {rc}) for {spec.suite}/{spec.arch}; last lines:\n"
                         f"{with_tail}",
                         hint="check build.packages names exist in this release and that "
                              f"{spec.mirror} is reachable")
    if not target.exists():
        raise BuildError(f"mmdebstrap exited 0 but wrote no {target}")
