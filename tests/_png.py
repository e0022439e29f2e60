"""A small PNG reader for screenshot checks (8-bit RGB/RGBA, non-interlaced: what Chromium writes)."""
from __future__ import annotations

import struct
import zlib

import numpy as np


def read_png(data: bytes) -> np.ndarray:
    """The image as a (height, width, channels) uint8 array."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos + 8 <= len(data):
        length, ctype = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8: pos + 8 + length]
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
        pos += 12 + length
    if ihdr is None:
        raise ValueError("no IHDR")
    width, height, depth, color, _c, _f, interlace = ihdr
    if depth != 8 or color not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {color}, interlace {interlace})")
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    stride = width * bpp
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = bytes(stride)
    for y in range(height):
        ftype, line = rows[y, 0], rows[y, 1:]
        if ftype == 0:
            cur = line.tobytes()
        elif ftype == 1:
            cur = (np.cumsum(line.reshape(-1, bpp).astype(np.int64), axis=0) % 256).astype(np.uint8).tobytes()
        elif ftype == 2:
            cur = ((line.astype(np.int32) + np.frombuffer(prev, np.uint8)) % 256).astype(np.uint8).tobytes()
        else:
            raw_line, c = line.tobytes(), bytearray(stride)
            for x in range(stride):
                a = c[x - bpp] if x >= bpp else 0
                b = prev[x]
                if ftype == 3:
                    c[x] = (raw_line[x] + ((a + b) >> 1)) & 0xFF
                else:
                    cc = prev[x - bpp] if x >= bpp else 0
                    p = a + b - cc
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                    c[x] = (raw_line[x] + (a if (pa <= pb and pa <= pc) else (b if pb <= pc else cc))) & 0xFF
            cur = bytes(c)
        out[y] = np.frombuffer(cur, np.uint8)
        prev = cur
    return out.reshape(height, width, bpp)
