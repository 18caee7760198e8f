"""Architecture words: what users type, the one internal pair, and each family's own words."""

from __future__ import annotations

X86_64 = "x86_64"
I686 = "i686"

ALIASES: dict[str, str] = {
    "amd64": X86_64, "x86_64": X86_64, "x64": X86_64, "x86-64": X86_64, "64": X86_64,
    "i386": I686, "i486": I686, "i586": I686, "i686": I686, "x86": I686, "ia32": I686, "32": I686,
}

_FAMILY_WORDS = {
    "debian": {X86_64: "amd64", I686: "i386"},
    "windows": {X86_64: "amd64", I686: "x86"},
}

QEMU_BINARY = {X86_64: "qemu-system-x86_64", I686: "qemu-system-i386"}


def normalise(word: str) -> str:
    """'amd64' -> 'x86_64', 'i386' -> 'i686'; raises ValueError for anything else."""
    try:
        return ALIASES[str(word).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown architecture {word!r}") from None


def family_word(family: str, arch: str) -> str:
    """The OS family's own word for an internal arch: ('debian', 'i686') -> 'i386'."""
    return _FAMILY_WORDS[family][normalise(arch)]


def bits(arch: str) -> int:
    return 64 if normalise(arch) == X86_64 else 32
