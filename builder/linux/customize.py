"""Customize a Debian-family guest through an open libguestfs handle.

Plain functions over a ``CustomizeSpec``: the stage opens one appliance, calls
``mount_guest``, ``apply`` and ``trim``, and closes it. Nothing here launches an appliance,
so a Windows customize can sit beside this module with the same shape.

Order matters: packages first (they may bring tzdata, locales, sudo, or the groups users join),
then system identity, accounts, files, build-time commands, and last the first-boot unit.
Accounts and packages are handled by the guest's own tools (useradd, apt-get, locale-gen,
visudo) run inside the image; only /etc/shadow is edited directly, so that password hashes
never appear on a command line.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from builder import hostpaths, secrets
from builder.errors import BuildError, GuestfsError, RecipeError, RecipeProblem
from builder.secrets import Secret
from builder.host.guestfs_session import guest_command

log = logging.getLogger("ironforge.customize")

# Locales that need neither the locales package nor locale-gen (built into glibc >= 2.35).
BUILTIN_LOCALES = {"C", "POSIX", "C.UTF-8", "C.utf8"}

FIRSTBOOT_UNIT = "ironforge-firstboot.service"
FIRSTBOOT_SCRIPT = "/usr/local/lib/ironforge/firstboot.sh"
FIRSTBOOT_DONE = "/var/lib/ironforge/firstboot.done"

_OUTPUT_TAIL_LINES = 400
# One guest command (an apt-get install of many packages under TCG, a recipe's own command) may
# take long, but not forever: a command waiting for input or a dead mirror is stopped here.
COMMAND_LIMIT = 3600
_RC_MARK = "@@ironforge-rc="
# Runs "$1" with a sane environment, stdin closed, stdout+stderr merged; prints the tail of the
# output and then the exit code, and itself always succeeds, so libguestfs never swallows stdout.
_WRAPPER = (
    "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "
    "DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C.UTF-8; "
    'out=$(/bin/sh -c "$1" 2>&1 </dev/null); rc=$?; '
    f'printf "%s\\n" "$out" | tail -n {_OUTPUT_TAIL_LINES}; echo "{_RC_MARK}$rc"'
)


def on_host(recipe) -> bool:
    """Whether a bootstrap build applies ``customize.*`` to its root tree on the host (in the disk
    stage) rather than in a customize stage's appliance. True when nothing runs the guest's package
    manager or the recipe's own commands (those need the guest's network, /proc and devices):
    what is left only edits files, and ``apply`` does that to a ``TreeEdit`` as to a mounted
    guest. Read from the recipe's values, so choosing the pipeline resolves no secret."""
    return not (recipe.get("customize.packages", None) or recipe.get("customize.commands", None))


# --- the spec -------------------------------------------------------------------------------

@dataclass(frozen=True)
class UserSpec:
    name: str
    ssh_keys: tuple[str, ...] = ()
    sudo: bool = False
    password: Secret | None = None      # crypt form ($6$…); None leaves the account locked
    shell: str = "/bin/bash"
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    owner: str = "root"                 # "user" or "user:group"


@dataclass(frozen=True)
class CustomizeSpec:
    hostname: str = "localhost"
    timezone: str = "UTC"
    locale: str = "C.UTF-8"
    root_password: Secret | None = None  # crypt form; None locks root
    users: tuple[UserSpec, ...] = ()
    packages: tuple[str, ...] = ()
    files: tuple[FileSpec, ...] = ()
    commands: tuple[str, ...] = ()
    firstboot: tuple[str, ...] = ()

    @classmethod
    def from_recipe(cls, recipe, env: Mapping[str, str] | None = None) -> "CustomizeSpec":
        """Read ``customize.*`` (validated, defaults applied), resolving and hashing secrets."""
        rdir = recipe.dir
        rfile = str(recipe.path) if recipe.path else recipe.name
        allowed = getattr(recipe, "host_paths", ())

        def get(key, default):
            v = recipe.get(f"customize.{key}", default)
            return default if v is None else v

        def password(ref, key):
            if ref is None:
                return None
            return secrets.crypt_form(secrets.resolve(ref, rdir, env, key, allowed, rfile))

        users = tuple(
            UserSpec(name=u["name"], ssh_keys=tuple(u.get("ssh_keys") or ()), sudo=bool(u.get("sudo")),
                     password=password(u.get("password"), f"customize.users[{i}].password"),
                     shell=u.get("shell") or "/bin/bash", groups=tuple(u.get("groups") or ()))
            for i, u in enumerate(get("users", [])))
        files = tuple(_file_spec(f, i, rdir, rfile, allowed) for i, f in enumerate(get("files", [])))
        return cls(hostname=get("hostname", "localhost"), timezone=get("timezone", "UTC"),
                   locale=get("locale", "C.UTF-8"),
                   root_password=password(recipe.get("customize.root_password", None),
                                          "customize.root_password"),
                   users=users, packages=tuple(get("packages", [])), files=files,
                   commands=tuple(get("commands", [])), firstboot=tuple(get("firstboot", [])))

    @property
    def needs_network(self) -> bool:
        return bool(self.packages)

    def summary(self) -> dict[str, Any]:
        """Facts for the stage's artifact data and the manifest. Never a secret or a hash."""
        return {
            "hostname": self.hostname, "timezone": self.timezone, "locale": self.locale,
            "root": "password" if self.root_password else "locked",
            "users": [u.name for u in self.users],
            "sudo_users": [u.name for u in self.users if u.sudo],
            "packages": list(self.packages), "files": [f.path for f in self.files],
            "commands": len(self.commands), "firstboot": len(self.firstboot),
        }


def _file_spec(f: dict, i: int, rdir: Path, rfile: str, allowed=()) -> FileSpec:
    key = f"customize.files[{i}]"
    has_content, has_source = f.get("content") is not None, f.get("source") is not None
    if has_content == has_source:
        raise RecipeError([RecipeProblem(rfile, key, "exactly one of content or source",
                                         "both" if has_content else "neither")])
    if has_content:
        data = f["content"].encode("utf-8")
    else:
        src = hostpaths.resolve(f["source"], rdir, allowed, key=f"{key}.source", recipe=rfile)
        try:
            data = src.read_bytes()
        except OSError as exc:
            raise RecipeError([RecipeProblem(rfile, f"{key}.source", "a readable file",
                                             f"{src} ({exc.strerror})")],
                              hint="source paths are relative to the recipe file's directory") from None
    mode = f.get("mode", "0644")
    return FileSpec(path=f["path"], content=data, mode=int(mode, 8) if isinstance(mode, str) else int(mode),
                    owner=f.get("owner") or "root")


# --- running things inside the guest ---------------------------------------------------------

@dataclass(frozen=True)
class CommandResult:
    rc: int
    output: str

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output.rstrip("\n").splitlines()[-lines:])


def run_in_guest(g, command: str, *, limit: int = COMMAND_LIMIT, what: str | None = None) -> CommandResult:
    """Run ``sh -c command`` chrooted in the guest; its exit code and merged output (tail).
    Over ``limit`` seconds it is stopped and a BuildError names it."""
    raw = guest_command(g, ["/bin/sh", "-c", _WRAPPER, "ironforge", command], limit=limit,
                        what=what or f"guest command `{_short(command)}`")
    body, _, rc = raw.rstrip("\n").rpartition(_RC_MARK)
    if not rc.isdigit():
        raise GuestfsError(f"could not read the exit status of a guest command: {raw[-500:]!r}")
    return CommandResult(int(rc), body[:-1] if body.endswith("\n") else body)


def check_in_guest(g, command: str, what: str, hint: str | None = None, *,
                   limit: int = COMMAND_LIMIT) -> CommandResult:
    """Like ``run_in_guest`` but a non-zero exit is a BuildError quoting the output's tail."""
    res = run_in_guest(g, command, limit=limit, what=what)
    log.debug("%s: exit %d\n%s", what, res.rc, res.tail(40))
    if res.rc != 0:
        raise BuildError(f"{what} failed (exit {res.rc}):\n{_indent(res.tail())}", hint=hint)
    return res


def _indent(text: str) -> str:
    return "\n".join("  | " + line for line in text.splitlines()) or "  | (no output)"


def package_installed(g, name: str) -> bool:
    res = run_in_guest(g, f"dpkg-query -W -f='${{db:Status-Status}}' {shlex.quote(name)} 2>/dev/null")
    return res.rc == 0 and res.output.strip() == "installed"


# --- /etc/passwd, /etc/group, /etc/shadow -----------------------------------------------------

@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


def accounts(g) -> dict[str, Account]:
    out = {}
    for line in g.cat("/etc/passwd").splitlines():
        f = line.split(":")
        if len(f) >= 7 and f[2].isdigit() and f[3].isdigit():   # skips NIS "+" lines
            out[f[0]] = Account(f[0], int(f[2]), int(f[3]), f[5], f[6])
    return out


def groups(g) -> dict[str, int]:
    out = {}
    for line in g.cat("/etc/group").splitlines():
        f = line.split(":")
        if len(f) >= 3 and f[2].isdigit():
            out[f[0]] = int(f[2])
    return out


def set_password_field(g, user: str, crypted: Secret | None) -> None:
    """Put a crypt hash into ``user``'s /etc/shadow entry, or lock it ('!' prefix) when None."""
    text = g.cat("/etc/shadow")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        f = line.split(":")
        if f[0] != user or len(f) < 3:
            continue
        if crypted is None:
            f[1] = f[1] if f[1].startswith("!") else "!" + f[1]
        else:
            f[1] = crypted.reveal()
            if f[2] in ("", "0"):  # 0 would force a password change at first login
                f[2] = str(int(time.time()) // 86400)
        lines[i] = ":".join(f)
        break
    else:
        raise BuildError(f"customize: user {user!r} has no entry in /etc/shadow")
    # Writing over the existing file keeps its inode, so its 0640 root:shadow stays as it was.
    g.write("/etc/shadow", "\n".join(lines) + "\n")


# --- steps ---------------------------------------------------------------------------------

def preflight(g, spec: CustomizeSpec) -> None:
    """Refuse before the slow steps what cannot work: sudo users without sudo, and so on."""
    wanted = set(spec.packages)
    sudoers = [u.name for u in spec.users if u.sudo]
    if sudoers and "sudo" not in wanted and not package_installed(g, "sudo"):
        raise BuildError(f"customize: users {', '.join(sudoers)} have sudo = true but sudo is not "
                         "installed in the image",
                         hint='add "sudo" to customize.packages (or build.packages)')
    if spec.locale not in BUILTIN_LOCALES and "locales" not in wanted and not package_installed(g, "locales"):
        raise BuildError(f"customize: locale {spec.locale} needs the locales package, which is not "
                         "installed in the image",
                         hint='add "locales" to customize.packages, or use locale = "C.UTF-8"')


POLICY_RC_D = "/usr/sbin/policy-rc.d"


@contextlib.contextmanager
def no_service_starts(g) -> Iterator[None]:
    """policy-rc.d 'exit 101' while packages and commands run: no daemon may start inside the
    build appliance. Removed afterwards only if we added it."""
    added = not g.exists(POLICY_RC_D)
    if added:
        g.write(POLICY_RC_D, "#!/bin/sh\n# ironforge: no service starts at build time\nexit 101\n")
        g.chmod(0o755, POLICY_RC_D)
    try:
        yield
    finally:
        if added:
            g.rm_f(POLICY_RC_D)


def clean_apt(g) -> None:
    """Package lists and downloaded .debs are large and go stale: images ship without them."""
    log.info("customize: cleaning apt lists and archives")
    run_in_guest(g, "apt-get clean; rm -rf /var/lib/apt/lists/*")


def install_packages(g, packages: tuple[str, ...]) -> None:
    if not packages:
        return
    log.info("customize: installing packages: %s", " ".join(packages))
    check_in_guest(g, "apt-get -q -o Acquire::Languages=none update", "apt-get update",
                   hint="the libguestfs appliance reaches the mirror through user networking; "
                        "check the host's network and the image's /etc/apt/sources.list")
    check_in_guest(g, "apt-get -q -y -o Dpkg::Options::=--force-confdef "
                      "-o Dpkg::Options::=--force-confold --no-install-recommends install "
                   + " ".join(shlex.quote(p) for p in packages),
                   f"apt-get install {' '.join(packages)}")


def set_hostname(g, hostname: str) -> None:
    log.info("customize: hostname %s", hostname)
    g.write("/etc/hostname", hostname + "\n")
    entry = f"127.0.1.1\t{hostname}"
    if g.exists("/etc/hosts"):
        lines = g.cat("/etc/hosts").splitlines()
    else:
        lines = ["127.0.0.1\tlocalhost", "::1\t\tlocalhost ip6-localhost ip6-loopback",
                 "ff02::1\t\tip6-allnodes", "ff02::2\t\tip6-allrouters"]
    kept = [ln for ln in lines if not ln.split("#", 1)[0].split()[:1] == ["127.0.1.1"]]
    # Right after the 127.0.0.1 line, where Debian's installer puts it.
    at = next((i + 1 for i, ln in enumerate(kept) if ln.split()[:1] == ["127.0.0.1"]), 0)
    kept.insert(at, entry)
    g.write("/etc/hosts", "\n".join(kept) + "\n")


def set_timezone(g, tz: str) -> None:
    log.info("customize: timezone %s", tz)
    zone = f"/usr/share/zoneinfo/{tz}"
    if not g.exists(zone) and tz not in ("UTC", "Etc/UTC"):
        raise BuildError(f"customize: time zone {tz!r} does not exist in the image ({zone})",
                         hint='check the name (e.g. "Europe/Paris"); add "tzdata" to customize.packages '
                              "if the image has no zone files")
    # Without tzdata the link dangles for UTC, which glibc reads as UTC anyway.
    g.ln_sf(zone, "/etc/localtime")
    g.write("/etc/timezone", tz + "\n")


def set_locale(g, locale: str) -> None:
    log.info("customize: locale %s", locale)
    if locale not in BUILTIN_LOCALES:
        supported = g.cat("/usr/share/i18n/SUPPORTED").splitlines() \
            if g.exists("/usr/share/i18n/SUPPORTED") else []
        entry = next((ln.strip() for ln in supported if ln.split()[:1] == [locale]), None)
        if entry is None:
            raise BuildError(f"customize: locale {locale!r} is not a supported glibc locale",
                             hint='names look like "en_US.UTF-8"; see /usr/share/i18n/SUPPORTED')
        gen = g.cat("/etc/locale.gen").splitlines() if g.exists("/etc/locale.gen") else []
        out, found = [], False
        for ln in gen:
            if ln.lstrip("# ").strip() == entry:
                ln, found = entry, True
            out.append(ln)
        if not found:
            out.append(entry)
        g.write("/etc/locale.gen", "\n".join(out) + "\n")
        log.debug("locale.gen entry: %s", entry)
        check_in_guest(g, "locale-gen", f"locale-gen for {locale}")
    g.write("/etc/default/locale", f"LANG={locale}\n")


def set_root_password(g, crypted: Secret | None) -> None:
    log.info("customize: root password %s", "set (SHA-512 crypt)" if crypted else "absent: root locked")
    set_password_field(g, "root", crypted)


def add_user(g, user: UserSpec) -> Account:
    log.info("customize: user %s%s", user.name, " (sudo)" if user.sudo else "")
    log.debug("user %s: shell %s, groups %s, %d ssh key(s)", user.name, user.shell,
              ",".join(user.groups) or "-", len(user.ssh_keys))
    q = shlex.quote
    grp = f" --groups {q(','.join(user.groups))}" if user.groups else ""
    if user.name in accounts(g):
        cmd = f"usermod --shell {q(user.shell)}{' --append' + grp if grp else ''} {q(user.name)}"
    else:
        cmd = f"useradd --create-home --user-group --shell {q(user.shell)}{grp} {q(user.name)}"
    check_in_guest(g, cmd, f"creating user {user.name}",
                   hint="every group in customize.users[].groups must exist in the image "
                        "(packages may create them: list those in customize.packages)")
    set_password_field(g, user.name, user.password)
    acct = accounts(g)[user.name]

    if user.ssh_keys:
        ssh = posixpath.join(acct.home, ".ssh")
        keys = posixpath.join(ssh, "authorized_keys")
        g.mkdir_p(ssh)
        g.write(keys, "\n".join(k.strip() for k in user.ssh_keys) + "\n")
        g.chmod(0o700, ssh)
        g.chmod(0o600, keys)
        g.chown(acct.uid, acct.gid, ssh)
        g.chown(acct.uid, acct.gid, keys)

    if user.sudo:
        # sudo ignores sudoers.d files whose names contain '.'; user names here cannot.
        path = f"/etc/sudoers.d/{user.name}"
        g.mkdir_p("/etc/sudoers.d")
        g.write(path, f"# Written by ironforge (customize.users sudo = true)\n"
                      f"{user.name} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        g.chmod(0o440, path)
        g.chown(0, 0, path)
        check_in_guest(g, f"visudo -cf {q(path)}", f"visudo check of {path}")
    return acct


def _owner_ids(g, owner: str) -> tuple[int, int]:
    user, _, group = owner.partition(":")
    accts = accounts(g)
    if user not in accts:
        raise BuildError(f"customize.files: owner {user!r} does not exist in the image",
                         hint="create it in customize.users, or use an existing account")
    gid = accts[user].gid
    if group:
        gids = groups(g)
        if group not in gids:
            raise BuildError(f"customize.files: group {group!r} does not exist in the image")
        gid = gids[group]
    return accts[user].uid, gid


def write_file(g, f: FileSpec) -> None:
    log.info("customize: file %s", f.path)
    log.debug("file %s: %d bytes, mode %04o, owner %s", f.path, len(f.content), f.mode, f.owner)
    uid, gid = _owner_ids(g, f.owner)
    parent = posixpath.dirname(f.path)
    if parent and parent != "/":
        g.mkdir_p(parent)
    g.write(f.path, f.content)
    g.chmod(f.mode, f.path)
    g.chown(uid, gid, f.path)


def run_commands(g, commands: tuple[str, ...]) -> None:
    for i, cmd in enumerate(commands):
        log.info("customize: command %d/%d", i + 1, len(commands))
        log.debug("command: %s", cmd)
        check_in_guest(g, cmd, f"customize.commands[{i}] `{_short(cmd)}`")


def _short(text: str, limit: int = 120) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def firstboot_script(commands: tuple[str, ...]) -> str:
    lines = ["#!/bin/sh",
             "# Written by ironforge: the recipe's customize.firstboot commands, run once at first boot",
             "# by ironforge-firstboot.service. A failing command stops here; the unit then shows as",
             "# failed and runs again at the next boot, since the done marker is written only at the end.",
             "# Output goes to the journal and the console (journalctl -u ironforge-firstboot).",
             "set -e"]
    for i, cmd in enumerate(commands):
        lines.append(f'echo "ironforge-firstboot: command {i + 1}/{len(commands)} ($(date -u +%FT%TZ))"')
        lines.append(f"/bin/sh -c {shlex.quote(cmd)}")
    lines += [f"mkdir -p {posixpath.dirname(FIRSTBOOT_DONE)}",
              f"touch {FIRSTBOOT_DONE}",
              f"systemctl --quiet disable {FIRSTBOOT_UNIT} || true",
              f"if systemctl --quiet is-enabled {FIRSTBOOT_UNIT}; then",
              '  echo "ironforge-firstboot: still enabled; the done marker keeps it from running again"',
              "else",
              '  echo "ironforge-firstboot: disabled"',
              "fi",
              'echo "ironforge-firstboot: done"']
    return "\n".join(lines) + "\n"


FIRSTBOOT_UNIT_TEXT = f"""\
# Written by ironforge: runs customize.firstboot once, then disables itself.
[Unit]
Description=ironforge first-boot commands
Wants=network-online.target
After=network-online.target
ConditionPathExists=!{FIRSTBOOT_DONE}

[Service]
Type=oneshot
ExecStart={FIRSTBOOT_SCRIPT}
RemainAfterExit=yes
TimeoutStartSec=infinity
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
"""


def install_firstboot(g, commands: tuple[str, ...]) -> None:
    if not commands:
        return
    log.info("customize: first-boot unit with %d command(s)", len(commands))
    g.mkdir_p(posixpath.dirname(FIRSTBOOT_SCRIPT))
    g.write(FIRSTBOOT_SCRIPT, firstboot_script(commands))
    g.chmod(0o755, FIRSTBOOT_SCRIPT)
    unit = f"/etc/systemd/system/{FIRSTBOOT_UNIT}"
    g.write(unit, FIRSTBOOT_UNIT_TEXT)
    g.chmod(0o644, unit)
    # What `systemctl enable` does, without needing systemd running in the appliance.
    g.mkdir_p("/etc/systemd/system/multi-user.target.wants")
    g.ln_sf(unit, f"/etc/systemd/system/multi-user.target.wants/{FIRSTBOOT_UNIT}")


def apply(g, spec: CustomizeSpec) -> dict[str, Any]:
    """Every customization, in order, on a guest already mounted at /. Returns ``spec.summary()``."""
    preflight(g, spec)
    with no_service_starts(g):
        install_packages(g, spec.packages)
        set_hostname(g, spec.hostname)
        set_timezone(g, spec.timezone)
        set_locale(g, spec.locale)
        set_root_password(g, spec.root_password)
        for user in spec.users:
            add_user(g, user)
        for f in spec.files:
            write_file(g, f)
        run_commands(g, spec.commands)
        if spec.packages or spec.commands:   # commands may have run apt too
            clean_apt(g)
    install_firstboot(g, spec.firstboot)
    return spec.summary()
