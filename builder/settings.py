"""The one table of recipe settings.

Each row names a key path, its type, its default, and a one-line doc. This table alone drives
validation, defaults, and the generated reference (`ironforge recipes schema`). Items of a list
of tables are addressed as ``sources[].url``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from builder import arch as archmod
from builder.runner.checks import CHECKS  # the check names live with their implementations

REQUIRED = object()  # default marker: the key must be given


class Bad(Exception):
    """A value does not fit its type; ``expected`` says what would."""

    def __init__(self, expected: str, got: str | None = None):
        super().__init__(expected)
        self.expected = expected
        self.got = got          # what was found, when the value itself must not be echoed


# -- value types ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Type:
    name: str

    def parse(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def expected(self) -> str:
        return self.name


# A NUL cannot travel through a command line, a guestfs call or a path; no setting needs one.
_NUL = "\x00"
# What breaks a line-based file (preseed, passwd, sources.list, authorized_keys…): line breaks
# (also the Unicode ones Python's splitlines() honours) and the other C0 controls and DEL. A
# tab is ordinary whitespace in all of them.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


class Str(Type):
    """A string; ``line=True`` for one that ends up as (part of) a line of some config file."""

    def __init__(self, pattern: str | None = None, what: str = "a string", line: bool = False):
        object.__setattr__(self, "name", what)
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "line", line)

    def parse(self, value):
        if not isinstance(value, str):
            raise Bad(self.name)
        if self.line and _CONTROL.search(value):
            raise Bad(f"{self.name}, on one line (no line breaks or control characters)")
        if _NUL in value:
            raise Bad(f"{self.name} without NUL characters")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise Bad(self.name)
        return value


class HostFile(Str):
    """A file on the build host, relative to the recipe's folder, which it must stay inside
    (builder.hostpaths). ``private``: its content may be secret, so only a token of it goes
    into cache keys and nothing of it into published manifests."""

    def __init__(self, private: bool, what: str = "a file path relative to the recipe's folder"):
        super().__init__(r".+", what, line=True)
        object.__setattr__(self, "private", private)


class Url(Type):
    """An http(s) URL without credentials: a recipe is shared and logged, so it never holds a
    password. ``mirror``: also no query or fragment (apt and d-i take a plain base URL)."""

    def __init__(self, mirror: bool = False):
        object.__setattr__(self, "name", "an http(s) URL" + (" of a mirror" if mirror else ""))
        object.__setattr__(self, "mirror", mirror)

    def parse(self, value):
        if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f]+", value):
            raise Bad(self.name)
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise Bad(self.name) from None
        if "@" in parts.netloc:
            raise Bad(f"{self.name} without user:password@ (credentials never go in a recipe; "
                      "serve the mirror without them, e.g. through a local proxy that adds them)",
                      got=f"a URL with credentials for {parts.hostname or 'a host'} (not shown)")
        if not parts.hostname:
            raise Bad(self.name)
        if self.mirror and (parts.query or parts.fragment or value.endswith(("?", "#"))):
            raise Bad(f"{self.name} without query or fragment")
        return value


class Int(Type):
    def __init__(self, lo: int | None = None, hi: int | None = None):
        what = "an integer"
        if lo is not None and hi is not None:
            what = f"an integer from {lo} to {hi}"
        elif lo is not None:
            what = f"an integer >= {lo}"
        object.__setattr__(self, "name", what)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    def parse(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Bad(self.name)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise Bad(self.name)
        return value


class Bool(Type):
    def __init__(self):
        object.__setattr__(self, "name", "true or false")

    def parse(self, value):
        if not isinstance(value, bool):
            raise Bad(self.name)
        return value


class Enum(Type):
    def __init__(self, *choices: str):
        object.__setattr__(self, "name", "one of " + ", ".join(repr(c) for c in choices))
        object.__setattr__(self, "choices", choices)

    def parse(self, value):
        if not isinstance(value, str) or value not in self.choices:
            raise Bad(self.name)
        return value


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


class _Scaled(Type):
    """A number with an optional unit suffix ("4G", "90m") or a plain int -> int in base units."""

    def __init__(self, what: str, pattern: str, units: dict[str, int], lo: int, hi: int, bounds: str):
        for k, v in (("name", what), ("pattern", pattern), ("units", units), ("lo", lo), ("hi", hi),
                     ("bounds", bounds)):
            object.__setattr__(self, k, v)

    def parse(self, value):
        if isinstance(value, bool):
            raise Bad(self.name)
        if isinstance(value, int):
            n = value
        elif isinstance(value, str):
            m = re.fullmatch(self.pattern, value, re.I)
            if not m:
                raise Bad(self.name)
            n = int(float(m.group(1)) * self.units[m.group(2).lower()])
        else:
            raise Bad(self.name)
        if not self.lo <= n <= self.hi:
            raise Bad(f"{self.name} {self.bounds}")
        return n


def Size(lo: int = 1 << 20, hi: int = 16 << 40) -> _Scaled:
    """"4G", "512M", "2048K" or a number of bytes -> int bytes."""
    return _Scaled('a size like "4G" or "512M"', r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*",
                   _SIZE_UNITS, lo, hi, f"between {lo >> 20}M and {hi >> 40}T")


def Duration(lo: int = 1, hi: int = 7 * 86400) -> _Scaled:
    """"90m", "1h", "45s" or a number of seconds -> int seconds."""
    return _Scaled('a duration like "90s", "15m" or "2h"', r"\s*(\d+)\s*([smh]?)\s*",
                   _DURATION_UNITS, lo, hi, f"between {lo}s and {hi // 86400} days")


class StrList(Type):
    def __init__(self, item: Type | None = None, what: str = "a list of strings"):
        object.__setattr__(self, "name", what)
        object.__setattr__(self, "item", item or Str())

    def parse(self, value):
        if not isinstance(value, list):
            raise Bad(self.name)
        out = []
        for i, v in enumerate(value):
            try:
                out.append(self.item.parse(v))
            except Bad as bad:
                if bad.expected == self.item.name:
                    raise Bad(self.name) from None
                raise Bad(f"{self.name} (item {i}: {bad.expected})") from None
        return out


class EnumList(StrList):
    def __init__(self, *choices: str):
        super().__init__(Enum(*choices), "a list of " + ", ".join(repr(c) for c in choices))


class ArchWord(Type):
    def __init__(self):
        object.__setattr__(self, "name", "an architecture: amd64/x86_64/x64 or i386/i686/x86")

    def parse(self, value):
        try:
            archmod.normalise(value)
        except (ValueError, AttributeError):
            raise Bad(self.name) from None
        return value


class SecretRef(Type):
    """{ env = "NAME" } or { file = "path" }: secrets are referenced, never written in recipes."""

    def __init__(self):
        object.__setattr__(self, "name", '{ env = "NAME" } or { file = "path" } (never the secret itself)')

    def parse(self, value):
        if (isinstance(value, dict) and len(value) == 1
                and set(value) <= {"env", "file"}
                and isinstance(next(iter(value.values())), str) and next(iter(value.values()))):
            # a variable name or a path: one line, no NUL (neither can hold one)
            if _CONTROL.search(next(iter(value.values()))):
                raise Bad(f"{self.name}, naming it on one line without control characters")
            return dict(value)
        # never echo a plain string here: it is likely the password itself
        raise Bad(self.name, got="a plain string (a secret is never written in a recipe)"
                  if isinstance(value, str) else None)


class WindowsEdition(Type):
    """An edition by name ("Windows 10 Pro") or 1-based index in install.wim."""

    def __init__(self):
        object.__setattr__(self, "name", 'an edition name like "Windows 10 Pro" or a 1-based index')

    def parse(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise Bad(self.name)
        if isinstance(value, int) and value < 1 or isinstance(value, str) and not value.strip():
            raise Bad(self.name)
        return value


class TableList(Type):
    """A list of tables whose fields are the rows ``<key>[].<field>``."""

    def __init__(self, what: str):
        object.__setattr__(self, "name", what)

    def parse(self, value):  # items are validated field by field by the validator
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise Bad(self.name)
        return value


@dataclass(frozen=True)
class Setting:
    key: str
    type: Type
    default: Any
    doc: str

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


HEX64 = r"[0-9a-fA-F]{64}"
HEX128 = r"[0-9a-fA-F]{128}"
# The one list of virtio drivers every Linux image's initramfs carries: the bootstrap stage puts
# them in the initramfs config, and they are the default of drivers.modules, which the drivers stage checks.
VIRTIO_MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console")

S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("extends", Str(what="the name or path of another recipe", line=True), None,
      "Recipe to start from; its tables are merged key by key, lists replace."),
    S("description", Str(what="a line of text", line=True), "", "One line saying what the image is."),
    S("arch", ArchWord(), REQUIRED, "CPU architecture: amd64 (x86_64) or i386 (i686)."),
    S("firmware", Enum("bios", "uefi"), "bios", "Boot firmware the image is made for."),
    S("os.family", Enum("debian", "windows"), REQUIRED, "Operating system family."),
    S("os.release", Str(r"[A-Za-z0-9.\-]+", "a release like \"12\" or \"bookworm\""), REQUIRED,
      "Release: Debian \"12\"/\"bookworm\", \"13\"/\"trixie\"; Windows \"10\", \"11\", \"server-2022\"…"),
    S("build.method", Enum("bootstrap", "installer", "convert"), "bootstrap",
      "bootstrap: mmdebstrap + image assembly (fast); installer: the official installer, unattended; "
      "convert: a foreign VM or container from source.image."),
    S("build.mirror", Url(mirror=True), "http://deb.debian.org/debian",
      "Package mirror used by the bootstrap and the installer."),
    S("build.keyring", HostFile(private=False, what="a keyring file relative to the recipe's folder"), None,
      "Binary OpenPGP keyring (gpg --export) that signs build.mirror's InRelease, for a mirror of "
      "your own (bootstrap method); default: Debian's archive keyrings."),
    S("build.variant", Enum("essential", "apt", "required", "minbase", "buildd", "important", "standard"),
      "apt", "mmdebstrap variant (package priority set)."),
    S("build.packages", StrList(Str(r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?", "a package name")), [],
      "Packages installed at build time on top of what booting needs."),
    S("source.image.path", Str(what="a path"), None,
      "build.method = \"convert\": the foreign disk, OVA, .vmx, domain XML or rootfs, relative to the recipe."),
    S("source.image.url", Url(), None,
      "build.method = \"convert\": download the source from here (needs source.image.sha256)."),
    S("source.image.sha256", Str(HEX64, "64 hex digits"), None, "Expected SHA-256 of the source file."),
    S("disk.size", Size(lo=512 << 20), 4 << 30, "Virtual size of the disk."),
    S("disk.partition_table", Enum("mbr", "gpt"), "mbr", "Partition table type."),
    S("disk.filesystem", Enum("ext4"), "ext4", "Root filesystem type."),
    S("sources", TableList("a list of tables ([[sources]])"), [],
      "Files to fetch and verify before building (installers, driver ISOs)."),
    S("sources[].name", Str(r"(?!\.\.?$)[A-Za-z0-9_.\-]+", "a name of letters, digits, '_', '.', '-' "
                            "(not '.' or '..')"), REQUIRED,
      "Logical name; later stages refer to the file by it."),
    S("sources[].url", Url(), None, "Download URL (needs sha256 or sha512)."),
    S("sources[].path", HostFile(private=False), None,
      "Local file, relative to the recipe's directory (and inside it, unless --allow-host-path)."),
    S("sources[].sha256", Str(HEX64, "64 hex digits"), None, "Expected SHA-256 of the file."),
    S("sources[].sha512", Str(HEX128, "128 hex digits"), None, "Expected SHA-512 of the file."),
    S("sources[].debian_installer.release", Str(r"[A-Za-z0-9]+", "a release like \"12\""), REQUIRED,
      "Debian release whose installer to fetch."),
    S("sources[].debian_installer.arch", ArchWord(), None, "Installer arch (default: the recipe's)."),
    S("sources[].debian_installer.image", Enum("netboot", "mini.iso"), "netboot",
      "netboot: kernel + initrd; mini.iso: the small installer ISO."),
    S("sources[].debian_installer.mirror", Url(mirror=True), None,
      "Mirror to fetch from (default: build.mirror)."),
    S("installer.locale", Str(r"[A-Za-z_]+(\.[A-Za-z0-9\-]+)?", "a locale like \"en_US.UTF-8\""),
      "en_US.UTF-8", "Installer language and system locale."),
    S("installer.keymap", Str(r"[a-z0-9_\-]+", "an X keymap like \"us\""), "us", "Keyboard layout."),
    S("installer.timeout", Duration(lo=60), 90 * 60, "Overall limit for an installer run."),
    S("installer.stall", Duration(lo=30), 15 * 60, "Fail when the installer shows no progress this long."),
    S("installer.extra_preseed", StrList(Str(what="a preseed line", line=True), "a list of preseed lines"),
      [], "Raw preseed lines appended verbatim."),
    S("customize.hostname", Str(r"[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?", "a hostname"),
      "localhost", "Host name of the guest."),
    S("customize.timezone", Str(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", "a zone like \"Europe/Paris\""),
      "UTC", "Time zone."),
    S("customize.locale", Str(r"[A-Za-z_]+(\.[A-Za-z0-9\-]+)?", "a locale like \"C.UTF-8\""), "C.UTF-8",
      "System locale."),
    S("customize.root_password", SecretRef(), None,
      "Root password by reference; the root account is locked when absent."),
    S("customize.users", TableList("a list of tables ([[customize.users]])"), [], "Local users."),
    S("customize.users[].name", Str(r"[a-z_][a-z0-9_\-]{0,31}", "a user name"), REQUIRED, "Login name."),
    S("customize.users[].ssh_keys",
      StrList(Str(what="an authorized_keys line", line=True), "a list of authorized_keys lines"), [],
      "authorized_keys lines."),
    S("customize.users[].sudo", Bool(), False, "Grant passwordless sudo."),
    S("customize.users[].password", SecretRef(), None, "Password by reference; locked when absent."),
    S("customize.users[].shell", Str(r"/[^\s:\x00-\x1f\x7f]+", "an absolute path"), "/bin/bash",
      "Login shell."),
    S("customize.users[].groups",
      StrList(Str(r"[A-Za-z_][A-Za-z0-9_.\-]{0,31}\$?", "a group name"), "a list of group names"), [],
      "Supplementary groups."),
    S("customize.packages", StrList(Str(r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?", "a package name")), [],
      "Extra packages installed by the customize stage."),
    S("customize.files", TableList("a list of tables ([[customize.files]])"), [], "Files to write."),
    S("customize.files[].path", Str(r"(/(?!\.\.?(?:/|$))[^/\x00-\x1f\x7f]+)+",
                                    "an absolute path (no '.', '..' or empty parts)"), REQUIRED,
      "Path in the guest."),
    S("customize.files[].content", Str(), None, "Literal content."),
    S("customize.files[].source", HostFile(private=True), None,
      "Host file to copy, relative to the recipe's directory (and inside it, unless --allow-host-path)."),
    S("customize.files[].mode", Str(r"0?[0-7]{3,4}", "an octal mode like \"0644\""), "0644", "File mode."),
    S("customize.files[].owner", Str(r"[a-z_][a-z0-9_\-]*(:[a-z_][a-z0-9_\-]*)?", "user or user:group"),
      "root", "Owner."),
    S("customize.commands", StrList(), [], "Shell commands run inside the image at build time."),
    S("customize.firstboot", StrList(), [], "Shell commands run once at the guest's first boot."),
    S("drivers.virtio", Bool(), True, "Make sure paravirtual (virtio) drivers are in the boot path."),
    S("drivers.modules", StrList(Str(r"[a-z0-9_\-]+", "a module name")), list(VIRTIO_MODULES),
      "Kernel modules the initramfs must carry."),
    S("outputs.formats", EnumList("qcow2", "raw", "vmdk", "ova", "vhdx", "vhd-azure", "vdi", "gce",
                                  "vagrant-libvirt", "libvirt"), ["qcow2"],
      "Image formats to publish (README: Exports). The VM they describe: verify.memory, verify.cpus, firmware."),
    S("outputs.compress", Bool(), True, "Compress the published qcow2."),
    S("outputs.compression", Enum("zstd", "zlib"), "zstd",
      "The compressed qcow2's codec: zstd (QEMU 5.1 and later read it; ~7x faster to write here, "
      "and smaller) or zlib (any qcow2 reader)."),
    S("verify.enabled", Bool(), True, "Boot the image and prove it works before publishing."),
    S("verify.timeout", Duration(lo=10), 900, "Overall limit for a verification boot."),
    S("verify.stall", Duration(lo=5), 300, "Fail when the console is silent this long."),
    S("verify.memory", Int(128, 65536), 1024, "Guest memory in MiB for verification."),
    S("verify.cpus", Int(1, 64), 1, "Guest vCPUs for verification."),
    S("verify.checks", EnumList(*CHECKS), list(CHECKS), "Checks run after the guest reports ready."),
    # -- Windows family (os.family = "windows"; os.release "7", "10", "11", "server-2019",
    #    "server-2022", "server-2025"). Microsoft media are never shipped: the user names them.
    S("windows.media.path", Str(what="a file path"), None,
      "Windows installer ISO, relative to the recipe's directory."),
    S("windows.media.url", Url(), None,
      "Where to download the installer ISO (needs sha256)."),
    S("windows.media.sha256", Str(HEX64, "64 hex digits"), None, "Expected SHA-256 of the installer ISO."),
    S("windows.virtio_win.path", Str(what="a file or directory path"), None,
      "virtio-win ISO or unpacked directory, relative to the recipe's directory."),
    S("windows.virtio_win.url", Url(), None,
      "Where to download the virtio-win ISO (needs sha256)."),
    S("windows.virtio_win.sha256", Str(HEX64, "64 hex digits"), None,
      "Expected SHA-256 of the virtio-win ISO (a directory is digested as a tree instead)."),
    S("windows.edition", WindowsEdition(), None,
      "Image to install: its name in install.wim, or its 1-based index (default: the only one)."),
    S("windows.product_key", SecretRef(), None, "Product key by reference (eval media need none)."),
    S("windows.admin_password", SecretRef(), None, "Administrator password by reference (required)."),
    S("windows.locale", Str(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", "a locale like \"en-US\""), "en-US",
      "UI language, input, system and user locale."),
    S("windows.timezone", Str(r"[A-Za-z0-9 ()+\-.]+", "a Windows time zone like \"UTC\""), "UTC",
      "Windows time zone name (tzutil /l), e.g. \"W. Europe Standard Time\"."),
    S("windows.users", TableList("a list of tables ([[windows.users]])"), [], "Local users."),
    S("windows.users[].name", Str(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,19}", "a Windows user name"), REQUIRED,
      "Account name (20 characters at most)."),
    S("windows.users[].password", SecretRef(), REQUIRED, "Password by reference."),
    S("windows.users[].admin", Bool(), False, "Member of Administrators (else Users)."),
    S("windows.tpm", Enum("auto", "swtpm", "bypass"), "auto",
      "Windows 11 TPM: swtpm (emulated TPM 2.0), bypass (LabConfig), auto = swtpm if installed."),
    S("windows.secure_boot", Bool(), False, "UEFI Secure Boot (OVMF with Microsoft keys enrolled)."),
    S("windows.disk_bus", Enum("virtio-blk", "virtio-scsi"), "virtio-blk", "System disk bus."),
    S("windows.firstlogon_commands", StrList(), [],
      "Commands run at first logon, before the image reports done and powers off."),
    S("windows.install.timeout", Duration(lo=600), 3 * 3600, "Overall limit for the unattended install."),
    S("windows.install.stall", Duration(lo=60), 20 * 60,
      "Fail when no new marker appears and the screen is unchanged this long."),
    S("windows.install.screenshot_every", Duration(lo=5), 60, "Seconds between evidence screenshots."),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}

# The machine's own settings, read from its configuration file (builder/user_config.py), not from
# a recipe: where a machine shares its stages is a fact of the machine, and the same recipe builds
# the same image with or without it. A command-line flag, then the environment, override them.
HOST_SETTINGS: tuple[Setting, ...] = (
    S("cache.remote", Str(what="an address oci://HOST[:PORT]/REPO (oci+http:// without TLS)", line=True), None,
      "OCI registry that shares stages between machines (--cache-remote, $IRONFORGE_CACHE_REMOTE)."),
    S("cache.remote_readonly", Bool(), False,
      "Pull from cache.remote, never push (--cache-remote-readonly, $IRONFORGE_CACHE_REMOTE_READONLY)."),
)


def secret_paths() -> list[str]:
    """Key paths of every secret reference, list items as ``[]`` (customize.users[].password)."""
    return [s.key for s in SETTINGS if isinstance(s.type, SecretRef)]


def host_file_paths(private: bool | None = None) -> list[str]:
    """Key paths of every host file setting; ``private`` selects those whose content may be secret."""
    return [s.key for s in SETTINGS if isinstance(s.type, HostFile)
            and (private is None or s.type.private == private)]


def children(prefix: str) -> list[str]:
    """Names directly below a table path ('' for the top level), e.g. children('customize')."""
    names: list[str] = []
    for key in BY_KEY:
        if prefix:
            if not key.startswith(prefix + "."):
                continue
            rest = key[len(prefix) + 1:]
        else:
            rest = key
        head = rest.split(".", 1)[0]
        if head.endswith("[]"):
            head = head[:-2]
        if head not in names:
            names.append(head)
    return names


def is_table(path: str) -> bool:
    """True when settings exist below ``path`` (it names a table, not a value)."""
    return path not in BY_KEY and any(k.startswith(path + ".") for k in BY_KEY)


def schema_markdown() -> str:
    """The generated settings reference."""
    lines = ["# Recipe settings", "",
             "Generated from `builder/settings.py` (`ironforge recipes schema`).", "",
             "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        if s.required:
            default = "**required**"
        elif s.default is None:
            default = "—"
        elif s.key == "disk.size":
            default = f'"{s.default >> 30}G"'
        else:
            default = f"`{_toml(s.default)}`"
        lines.append(f"| `{s.key}` | {s.type.expected} | {default} | {s.doc} |")
    return "\n".join(lines) + "\n"


def schema_json() -> list[dict]:
    return [{"key": s.key, "type": s.type.expected, "required": s.required,
             "default": None if s.required else s.default, "doc": s.doc} for s in SETTINGS]


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)
