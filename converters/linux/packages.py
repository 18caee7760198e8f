"""The packages a guest lacks to boot on KVM (a kernel with virtio, initramfs-tools, GRUB),
resolved and downloaded on the host by apt with a private configuration, installed later by the
guest's own dpkg inside the libguestfs appliance.

Why this route: apt on the host checks the whole chain (InRelease signature by the Debian archive
keyring, Packages digests from the signed Release, each .deb's digest from Packages) and resolves
against the guest's own dpkg status file, so it fetches exactly what the guest is missing, and
it runs no guest code (no chroot, no maintainer script on the host). The appliance needs no
network. The install order is apt's own (``apt-get -s`` prints the unpack/configure sequence
its package manager would hand dpkg), replayed by dpkg in the guest.

Nothing of the host's apt setup is read: APT_CONFIG points at a file whose Dir::Etc is a private
folder, so the host's sources, preferences and apt.conf.d stay out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError, UsageError
from builder.host import proc as hostproc
from builder.host import tools

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
MAX_STATUS = 64 << 20          # a dpkg status file is a few MB; a bigger one is not a guest's
UPDATE_TIMEOUT = 900
DOWNLOAD_TIMEOUT = 3600

_SEQ = re.compile(r"^(Inst|Conf) (\S+) (?:\[[^\]]*\] )?\((\S+) [^\[]*\[([^\]]+)\]\)")


@dataclass(frozen=True)
class Step:
    op: str          # "unpack" | "configure"
    package: str
    version: str
    arch: str


@dataclass
class Fetched:
    """What apt decided: the .debs (verified, in ``archives``) and dpkg's order for them."""
    packages: list[str]                  # asked for
    steps: list[Step] = field(default_factory=list)
    debs: dict[str, Path] = field(default_factory=dict)     # package -> .deb

    @property
    def installed(self) -> list[str]:
        return [s.package for s in self.steps if s.op == "unpack"]

    def to_dict(self) -> dict:
        return {"asked": self.packages,
                "installed": [f"{s.package} {s.version} {s.arch}" for s in self.steps if s.op == "unpack"]}


def apt_config(d: Path, arch: str, mirror: str, suite: str, keyring: Path = KEYRING) -> Path:
    """A private apt configuration under ``d`` (returned: the file APT_CONFIG names)."""
    for sub in ("etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "etc/trusted.gpg.d",
                "state/lists/partial", "cache/archives/partial", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "etc/sources.list").write_text(f"deb [signed-by={keyring}] {mirror.rstrip('/')} {suite} main\n")
    conf = d / "apt.conf"
    conf.write_text("\n".join([
        'Dir "/";',
        f'Dir::Etc "{d}/etc";',
        f'Dir::Etc::sourcelist "{d}/etc/sources.list";',
        f'Dir::Etc::sourceparts "{d}/etc/sources.list.d";',
        f'Dir::Etc::parts "{d}/etc/apt.conf.d";',
        f'Dir::Etc::preferencesparts "{d}/etc/preferences.d";',
        f'Dir::Etc::trustedparts "{d}/etc/trusted.gpg.d";',
        f'Dir::State "{d}/state";',
        f'Dir::State::status "{d}/status";',
        f'Dir::Cache "{d}/cache";',
        f'Dir::Log "{d}/log";',
        f'APT::Architecture "{arch}";',
        f'APT::Architectures {{ "{arch}"; }};',
        'APT::Install-Recommends "false";',
        'APT::Install-Suggests "false";',
        'APT::Get::Assume-Yes "true";',
        # the private folders belong to root; apt's download sandbox user could not write them
        'APT::Sandbox::User "root";',
        'Acquire::Languages "none";',
        'Acquire::Retries "3";',
        # the status file is a copy of the guest's: there is no dpkg database of ours to lock
        'Debug::NoLocking "true";',
        "",
    ]))
    return conf


def parse_sequence(text: str) -> list[Step]:
    """``apt-get -s install`` output → its Inst/Conf lines, in order."""
    out = []
    for line in text.splitlines():
        m = _SEQ.match(line)
        if m:
            op, pkg, ver, rest = m.groups()
            arch = rest.rsplit(" ", 1)[-1]
            out.append(Step("unpack" if op == "Inst" else "configure", pkg, ver, arch))
    return out


def deb_name(s: Step) -> str:
    """The file name apt gives a downloaded .deb (an epoch's ':' is written %3a)."""
    return f"{s.package}_{s.version.replace(':', '%3a')}_{s.arch}.deb"


def _apt(conf: Path, args: list[str], what: str, timeout: float) -> str:
    env = {"APT_CONFIG": str(conf), "LC_ALL": "C.UTF-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "DEBIAN_FRONTEND": "noninteractive"}
    proc = hostproc.run([tools.require("apt-get"), *args], what=what, timeout=timeout, env=env, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{tail}",
                         hint="is the Debian archive reachable (build.mirror)? A package name missing "
                              "from this release means the guest is not the release it says")
    return proc.stdout


def fetch(status: Path, arch: str, suite: str, packages: list[str], workdir: Path, *,
          mirror: str = "http://deb.debian.org/debian", offline: bool = False,
          keyring: Path = KEYRING) -> Fetched:
    """Resolve ``packages`` against the guest's dpkg ``status`` (copied, bounded) and download
    what the guest lacks into ``workdir/cache/archives``."""
    if offline:
        raise UsageError("installing a kernel into the guest needs the Debian archive, and this run is offline",
                         hint="run without --offline (the .debs come from build.mirror, signature-checked)")
    if not keyring.is_file():
        raise BuildError(f"{keyring} is missing: apt cannot check the archive's signature",
                         hint="apt-get install debian-archive-keyring")
    if status.stat().st_size > MAX_STATUS:
        raise BuildError(f"the guest's dpkg status file is {status.stat().st_size} bytes",
                         hint="not a dpkg database ironforge reads")
    conf = apt_config(workdir, arch, mirror, suite, keyring)
    (workdir / "status").write_bytes(status.read_bytes())
    _apt(conf, ["-q", "update"], f"apt-get update ({suite} {arch})", UPDATE_TIMEOUT)
    seq = parse_sequence(_apt(conf, ["-q", "-s", "install", *packages],
                              "apt-get -s install (the guest's missing packages)", UPDATE_TIMEOUT))
    got = Fetched(packages=list(packages), steps=seq)
    if not got.installed:
        return got
    _apt(conf, ["-q", "--download-only", "install", *packages],
         f"downloading {len(got.installed)} packages", DOWNLOAD_TIMEOUT)
    archives = workdir / "cache" / "archives"
    for s in seq:
        if s.op == "unpack":
            p = archives / deb_name(s)
            if not p.is_file():
                raise BuildError(f"apt reported {s.package} {s.version} but no {p.name} was downloaded",
                                 hint="run with --debug and check the apt output")
            got.debs[s.package] = p
    return got


def dpkg_script(steps: list[Step], debdir: str) -> str:
    """The shell script, run in the guest, that replays apt's sequence with the guest's dpkg: each
    run of unpacks is one ``dpkg --unpack``, each run of configures one ``dpkg --configure`` (dpkg
    orders within a call; a package an earlier call already configured is left out).

    INITRD=No: the kernel's postinst hook skips its initramfs; the caller builds it once after
    the virtio modules are configured (otherwise initramfs-tools' trigger would build it again).
    """
    lines = ["set -e", "export DEBIAN_FRONTEND=noninteractive INITRD=No",
             'D="dpkg --force-confdef --force-confold"']
    groups: list[tuple[str, list[Step]]] = []
    for s in steps:
        if groups and groups[-1][0] == s.op:
            groups[-1][1].append(s)
        else:
            groups.append((s.op, [s]))
    for op, group in groups:
        if op == "unpack":
            lines.append("$D --unpack " + " ".join(f"{debdir}/{deb_name(s)}" for s in group))
        else:
            lines.append("P=; for p in " + " ".join(s.package for s in group) + "; do "
                         "dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q ' installed$' || P=\"$P $p\"; done")
            lines.append('[ -z "$P" ] || $D --configure $P')
    lines.append("$D --configure --pending")
    return "\n".join(lines) + "\n"
