"""The one table of recipe settings.

Each row names a key path, its type, its default, and a one-line doc. This table alone drives
validation, defaults, and the generated reference (`ironforge recipes schema`). Items of a list
of tables are addressed as ``sources[].url``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from builder import arch as archmod

REQUIRED = object()  # default marker: the key must be given


class Bad(Exception):
    """A value does not fit its type; ``expected`` says what would."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


# -- value types ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Type:
    name: str

    def parse(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def expected(self) -> str:
        return self.name


class Str(Type):
    def __init__(self, pattern: str | None = None, what: str = "a string"):
        object.__setattr__(self, "name", what)
        object.__setattr__(self, "pattern", pattern)

    def parse(self, value):
        if not isinstance(value, str):
            raise Bad(self.name)
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise Bad(self.name)
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
        for v in value:
            try:
                out.append(self.item.parse(v))
            except Bad:
                raise Bad(self.name) from None
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
            return dict(value)
        raise Bad(self.name)


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
VIRTIO_MODULES = ["virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console"]
CHECKS = ("arch", "virtio-root", "virtio-drivers", "systemd")

S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("extends", Str(what="the name or path of another recipe"), None,
      "Recipe to start from; its tables are merged key by key, lists replace."),
    S("description", Str(), "", "One line saying what the image is."),
    S("arch", ArchWord(), REQUIRED, "CPU architecture: amd64 (x86_64) or i386 (i686)."),
    S("firmware", Enum("bios", "uefi"), "bios", "Boot firmware the image is made for."),
    S("os.family", Enum("debian", "windows"), REQUIRED, "Operating system family."),
    S("os.release", Str(r"[A-Za-z0-9.\-]+", "a release like \"12\" or \"bookworm\""), REQUIRED,
      "Release: Debian \"12\"/\"bookworm\", \"13\"/\"trixie\"."),
    S("build.method", Enum("bootstrap", "installer", "convert"), "bootstrap",
      "bootstrap: mmdebstrap + image assembly (fast); installer: the official installer, unattended; "
      "convert: a foreign VM or container from source.image."),
    S("build.mirror", Str(r"https?://\S+", "an http(s) URL"), "http://deb.debian.org/debian",
      "Package mirror used by the bootstrap and the installer."),
    S("build.variant", Enum("essential", "apt", "required", "minbase", "buildd", "important", "standard"),
      "apt", "mmdebstrap variant (package priority set)."),
    S("build.packages", StrList(Str(r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?", "a package name")), [],
      "Packages installed at build time on top of what booting needs."),
    S("source.image.path", Str(what="a path"), None,
      "build.method = \"convert\": the foreign disk, OVA, .vmx, domain XML or rootfs, relative to the recipe."),
    S("source.image.url", Str(r"https?://\S+", "an http(s) URL"), None,
      "build.method = \"convert\": download the source from here (needs source.image.sha256)."),
    S("source.image.sha256", Str(HEX64, "64 hex digits"), None, "Expected SHA-256 of the source file."),
    S("disk.size", Size(lo=512 << 20), 4 << 30, "Virtual size of the disk."),
    S("disk.partition_table", Enum("mbr", "gpt"), "mbr", "Partition table type."),
    S("disk.filesystem", Enum("ext4"), "ext4", "Root filesystem type."),
    S("sources", TableList("a list of tables ([[sources]])"), [],
      "Files to fetch and verify before building (installers, driver ISOs)."),
    S("sources[].name", Str(r"[A-Za-z0-9_.\-]+", "a name of letters, digits, '_', '.', '-'"), REQUIRED,
      "Logical name; later stages refer to the file by it."),
    S("sources[].url", Str(r"https?://\S+", "an http(s) URL"), None, "Download URL (needs sha256 or sha512)."),
    S("sources[].path", Str(), None, "Local file, relative to the recipe's directory."),
    S("sources[].sha256", Str(HEX64, "64 hex digits"), None, "Expected SHA-256 of the file."),
    S("sources[].sha512", Str(HEX128, "128 hex digits"), None, "Expected SHA-512 of the file."),
    S("sources[].debian_installer.release", Str(r"[A-Za-z0-9]+", "a release like \"12\""), REQUIRED,
      "Debian release whose installer to fetch."),
    S("sources[].debian_installer.arch", ArchWord(), None, "Installer arch (default: the recipe's)."),
    S("sources[].debian_installer.image", Enum("netboot", "mini.iso"), "netboot",
      "netboot: kernel + initrd; mini.iso: the small installer ISO."),
    S("sources[].debian_installer.mirror", Str(r"https?://\S+", "an http(s) URL"), None,
      "Mirror to fetch from (default: build.mirror)."),
    S("installer.locale", Str(r"[A-Za-z_]+(\.[A-Za-z0-9\-]+)?", "a locale like \"en_US.UTF-8\""),
      "en_US.UTF-8", "Installer language and system locale."),
    S("installer.keymap", Str(r"[a-z0-9_\-]+", "an X keymap like \"us\""), "us", "Keyboard layout."),
    S("installer.timeout", Duration(lo=60), 90 * 60, "Overall limit for an installer run."),
    S("installer.stall", Duration(lo=30), 15 * 60, "Fail when the installer shows no progress this long."),
    S("installer.extra_preseed", StrList(), [], "Raw preseed lines appended verbatim."),
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
    S("customize.users[].ssh_keys", StrList(), [], "authorized_keys lines."),
    S("customize.users[].sudo", Bool(), False, "Grant passwordless sudo."),
    S("customize.users[].password", SecretRef(), None, "Password by reference; locked when absent."),
    S("customize.users[].shell", Str(r"/\S+", "an absolute path"), "/bin/bash", "Login shell."),
    S("customize.users[].groups", StrList(), [], "Supplementary groups."),
    S("customize.packages", StrList(Str(r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?", "a package name")), [],
      "Extra packages installed by the customize stage."),
    S("customize.files", TableList("a list of tables ([[customize.files]])"), [], "Files to write."),
    S("customize.files[].path", Str(r"/.*", "an absolute path"), REQUIRED, "Path in the guest."),
    S("customize.files[].content", Str(), None, "Literal content."),
    S("customize.files[].source", Str(), None, "Host file to copy, relative to the recipe's directory."),
    S("customize.files[].mode", Str(r"0?[0-7]{3,4}", "an octal mode like \"0644\""), "0644", "File mode."),
    S("customize.files[].owner", Str(r"[a-z_][a-z0-9_\-]*(:[a-z_][a-z0-9_\-]*)?", "user or user:group"),
      "root", "Owner."),
    S("customize.commands", StrList(), [], "Shell commands run inside the image at build time."),
    S("customize.firstboot", StrList(), [], "Shell commands run once at the guest's first boot."),
    S("drivers.virtio", Bool(), True, "Make sure paravirtual (virtio) drivers are in the boot path."),
    S("drivers.modules", StrList(Str(r"[a-z0-9_\-]+", "a module name")), list(VIRTIO_MODULES),
      "Kernel modules the initramfs must carry."),
    S("outputs.formats", EnumList("qcow2", "raw", "vmdk"), ["qcow2"], "Image formats to publish."),
    S("outputs.compress", Bool(), True, "Compress the published qcow2."),
    S("verify.enabled", Bool(), True, "Boot the image and prove it works before publishing."),
    S("verify.timeout", Duration(lo=10), 900, "Overall limit for a verification boot."),
    S("verify.stall", Duration(lo=5), 300, "Fail when the console is silent this long."),
    S("verify.memory", Int(128, 65536), 1024, "Guest memory in MiB for verification."),
    S("verify.cpus", Int(1, 64), 1, "Guest vCPUs for verification."),
    S("verify.checks", EnumList(*CHECKS), list(CHECKS), "Checks run after the guest reports ready."),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


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
