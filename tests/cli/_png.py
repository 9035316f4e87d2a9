"""A small PNG reader (8-bit greyscale/RGB/RGBA, not interlaced) for screenshot checks.

Pure numpy, so the report test needs no imaging library. PNG filters make
each byte depend on its left, upper and upper-left neighbours; all pixels on
one anti-diagonal (x + y = k) depend only on earlier diagonals, so the image
is reconstructed one diagonal at a time, vectorised over the diagonal —
about W + H numpy steps instead of W x H Python steps.

>>> img = read_png("screenshot.png")  # doctest: +SKIP
>>> img.shape                          # doctest: +SKIP
(2400, 1280, 3)
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def read_png(path: str) -> np.ndarray:
    """The image as a (height, width, channels) uint8 array."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    pos, idat = 8, []
    width = height = color_type = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace or color_type not in _CHANNELS:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {color_type}")
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    bpp = _CHANNELS[color_type]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    raw = raw.reshape(height, width * bpp + 1)
    filters = raw[:, 0].astype(np.int32)
    if filters.max(initial=0) > 4:
        raise ValueError("bad PNG filter type")
    filtered = raw[:, 1:].reshape(height, width, bpp).astype(np.int32)
    # out[y + 1, x + 1] is pixel (y, x); row 0 and column 0 are the zero border.
    out = np.zeros((height + 1, width + 1, bpp), dtype=np.int32)
    for k in range(height + width - 1):
        ys = np.arange(max(0, k - width + 1), min(height, k + 1))
        xs = k - ys
        a = out[ys + 1, xs]  # left
        b = out[ys, xs + 1]  # up
        c = out[ys, xs]  # up-left
        f = filters[ys][:, None]
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([f == 1, f == 2, f == 3, f == 4], [a, b, (a + b) >> 1, paeth], default=0)
        out[ys + 1, xs + 1] = (filtered[ys, xs] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8)
