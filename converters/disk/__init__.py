"""Disk header parsers written by us: detect a format and every external reference without
letting qemu near the file first (qemu then gets the format explicitly and is cross-checked)."""
