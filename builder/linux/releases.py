"""The one table of the Debian releases ironforge builds: number, codename, and the kernel
package each architecture boots with.

Validation, the package set, the preseed and the archive fetcher all read this table, so adding
a release (or losing an architecture) is one edit here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from builder import arch as archmod


@dataclass(frozen=True)
class Release:
    number: str                      # "12": what recipes write in os.release
    codename: str                    # "bookworm": the archive's suite name
    # internal arch -> the kernel flavour's package; an arch missing here has no kernel (and no
    # installer) in this release, so an image for it cannot boot
    kernels: dict[str, str] = field(hash=False)

    def kernel(self, arch: str) -> str | None:
        """The kernel package for ``arch`` (any alias), or None when the release has none."""
        return self.kernels.get(archmod.normalise(arch))


RELEASES: tuple[Release, ...] = (
    Release("12", "bookworm", {archmod.X86_64: "linux-image-amd64", archmod.I686: "linux-image-686-pae"}),
    # Debian 13 dropped the i386 kernel and installer (only a userland for multiarch remains)
    Release("13", "trixie", {archmod.X86_64: "linux-image-amd64"}),
)

BY_NUMBER: dict[str, Release] = {r.number: r for r in RELEASES}
BY_CODENAME: dict[str, Release] = {r.codename: r for r in RELEASES}


def find(word: str | int) -> Release | None:
    """The release a user means by ``word`` ('12', 12 or 'bookworm'); None when unknown.
    Callers raise their own error (recipe problem, usage, build), each with its own hint."""
    w = str(word).strip().lower()
    return BY_NUMBER.get(w) or BY_CODENAME.get(w)
