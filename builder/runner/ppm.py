"""PPM (what QMP screendump writes) to PNG, in pure Python: zlib and struct, no PIL."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _read_token(data: bytes, pos: int) -> tuple[bytes, int]:
    # Skip whitespace and '#' comments, then read one token.
    n = len(data)
    while pos < n:
        c = data[pos:pos + 1]
        if c.isspace():
            pos += 1
        elif c == b"#":
            while pos < n and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
        else:
            break
    start = pos
    while pos < n and not data[pos:pos + 1].isspace():
        pos += 1
    return data[start:pos], pos


def parse_ppm(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) from a binary P6 PPM with maxval 255."""
    magic, pos = _read_token(data, 0)
    if magic != b"P6":
        raise ValueError(f"not a binary PPM (magic {magic[:8]!r})")
    w, pos = _read_token(data, pos)
    h, pos = _read_token(data, pos)
    maxval, pos = _read_token(data, pos)
    width, height, mv = int(w), int(h), int(maxval)
    if mv != 255:
        raise ValueError(f"PPM maxval {mv} not supported")
    pos += 1  # exactly one whitespace byte after maxval
    pixels = data[pos:pos + width * height * 3]
    if len(pixels) != width * height * 3:
        raise ValueError("PPM truncated")
    return width, height, pixels


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    stride = width * 3
    # filter type 0 (None) per scanline: simple, and screens of text compress well anyway
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 6))
            + _chunk(b"IEND", b""))


def ppm_to_png(ppm: Path, png: Path) -> Path:
    width, height, rgb = parse_ppm(Path(ppm).read_bytes())
    tmp = Path(png).with_name(Path(png).name + ".tmp")
    tmp.write_bytes(encode_png(width, height, rgb))
    tmp.replace(png)
    return Path(png)


def decode_png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG: used by tests and reports to show a screenshot is real."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])
