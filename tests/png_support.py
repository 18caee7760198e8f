"""Read a PNG back into pixels (8-bit RGB/RGBA/grey, non-interlaced: what Chromium and our ppm.py
write), so tests can tell a rendered page from a blank one."""

from __future__ import annotations

import statistics
import struct
import zlib

_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def decode(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw pixel bytes) of an 8-bit non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour, _c, _f, interlace = ihdr
    assert depth == 8 and interlace == 0 and colour in _CHANNELS, f"unsupported PNG {ihdr}"
    bpp = _CHANNELS[colour]
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out += line
        prev = line
    return width, height, bpp, bytes(out)


def luminance_stats(data: bytes, step: int = 7) -> tuple[float, int]:
    """(variance of luminance, number of distinct colours) over every ``step``-th pixel."""
    width, height, bpp, px = decode(data)
    lum, colours = [], set()
    for i in range(0, width * height, step):
        p = px[i * bpp:(i + 1) * bpp]
        rgb = (p[0], p[0], p[0]) if bpp < 3 else tuple(p[:3])
        colours.add(rgb)
        lum.append(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    return statistics.pvariance(lum), len(colours)
