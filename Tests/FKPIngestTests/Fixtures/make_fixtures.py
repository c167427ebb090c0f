#!/usr/bin/env python3
"""Writes the PNG fixtures of PNGTests with the standard library only: one 7x5 picture in every PNG
flavour, plus broken files. Run from this folder."""
import struct, zlib

W, H = 7, 5
# a grey ramp with known values; colour versions use r=g=b so the BT.601 luma equals the grey
GREY = [[(x * 37 + y * 11) % 256 for x in range(W)] for y in range(H)]

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

def png(colour_type, depth, rows, interlace=0, plte=None, trns=None, w=W, h=H, raw=None):
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, interlace)
    body = chunk(b"IHDR", ihdr)
    if plte: body += chunk(b"PLTE", plte)
    if trns: body += chunk(b"tRNS", trns)
    if raw is None:
        raw = b"".join(b"\x00" + bytes(r) for r in rows)
    body += chunk(b"IDAT", zlib.compress(raw))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")

def px(fn):
    return [[b for x in range(W) for b in fn(GREY[y][x])] for y in range(H)]

files = {
    "gray8.png": png(0, 8, px(lambda v: [v])),
    "gray16.png": png(0, 16, px(lambda v: [v, v])),  # v*257: the same grey in 16 bits
    "graya8.png": png(4, 8, px(lambda v: [v, 255])),
    "rgb8.png": png(2, 8, px(lambda v: [v, v, v])),
    "rgba8.png": png(6, 8, px(lambda v: [v, v, v, 255])),
    "rgb16.png": png(2, 16, px(lambda v: [v, v, v, v, v, v])),
}
# palette: one entry per distinct grey
levels = sorted({v for r in GREY for v in r})
index = {v: i for i, v in enumerate(levels)}
files["palette.png"] = png(3, 8, [[index[GREY[y][x]] for x in range(W)] for y in range(H)],
                           plte=b"".join(bytes([v, v, v]) for v in levels))
# Adam7 interlaced grey
passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
raw = b""
for x0, y0, dx, dy in passes:
    for y in range(y0, H, dy):
        row = [GREY[y][x] for x in range(x0, W, dx)]
        if row: raw += b"\x00" + bytes(row)
files["interlaced.png"] = png(0, 8, None, interlace=1, raw=raw)
good = files["gray8.png"]
files["truncated.png"] = good[: len(good) // 2]
files["not-a-png.png"] = b"GIF89a this is not a PNG file at all"
files["huge-header.png"] = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
for name, data in files.items():
    open(name, "wb").write(data)
print("wrote", len(files), "fixtures")
