"""Limits for reading an untrusted archive."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caps:
    max_members: int
    max_member: int          # bytes, one member
    max_total: int           # bytes, all members together (after decompression)
    max_ratio: int = 200     # zip: uncompressed / compressed, for members over 1 MiB


OVA = Caps(max_members=1000, max_member=2 << 40, max_total=4 << 40)
ROOTFS = Caps(max_members=2_000_000, max_member=64 << 30, max_total=512 << 30)
