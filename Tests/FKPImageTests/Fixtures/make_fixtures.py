#!/usr/bin/env python3
"""Writes the PNG fixtures of PNGTests.swift with the standard library only (zlib + struct, chunks
written by hand): one known 7x5 picture in every PNG flavour, plus broken files. Run from anywhere;
the files land next to this script.

The picture: grey value (x*37 + y*11) % 256 at (x, y). Colour flavours use R = G = B = grey, so the
BT.601 luma equals the grey. Alpha, where the flavour has it, varies from 0 to 255 and must be dropped
by the decoder (not composited), so every flavour decodes to the same grey."""
import os, struct, zlib

W, H = 7, 5
GREY = [[(x * 37 + y * 11) % 256 for x in range(W)] for y in range(H)]
ALPHA = [[(x * 53 + y * 97) % 256 for x in range(W)] for y in range(H)]  # 0 at (0, 0), 255 nowhere special
HERE = os.path.dirname(os.path.abspath(__file__))


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(colour_type, depth, pixel, interlace=0, plte=None, trns=None, w=W, h=H):
    """pixel(x, y) -> the bytes of one pixel (8- or 16-bit samples, filter type 0 everywhere)."""
    if interlace:
        # Adam7: seven reduced images, each with its own rows (an empty pass has no rows at all).
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b""
        for x0, y0, dx, dy in passes:
            if x0 >= w:
                continue
            for y in range(y0, h, dy):
                raw += b"\x00" + b"".join(pixel(x, y) for x in range(x0, w, dx))
    else:
        raw = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(w)) for y in range(h))
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, interlace))
    if plte:
        body += chunk(b"PLTE", plte)
    if trns:
        body += chunk(b"tRNS", trns)
    body += chunk(b"IDAT", zlib.compress(raw, 9))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


g = lambda x, y: GREY[y][x]
a = lambda x, y: ALPHA[y][x]
b8 = lambda *v: bytes(v)
b16 = lambda *v: b"".join(struct.pack(">H", s * 257) for s in v)  # v*257: the same level in 16 bits

files = {
    "gray8.png": png(0, 8, lambda x, y: b8(g(x, y))),
    "gray16.png": png(0, 16, lambda x, y: b16(g(x, y))),
    "graya8.png": png(4, 8, lambda x, y: b8(g(x, y), a(x, y))),
    "graya16.png": png(4, 16, lambda x, y: b16(g(x, y), a(x, y))),
    "rgb8.png": png(2, 8, lambda x, y: b8(g(x, y), g(x, y), g(x, y))),
    "rgb16.png": png(2, 16, lambda x, y: b16(g(x, y), g(x, y), g(x, y))),
    "rgba8.png": png(6, 8, lambda x, y: b8(g(x, y), g(x, y), g(x, y), a(x, y))),
    "rgba16.png": png(6, 16, lambda x, y: b16(g(x, y), g(x, y), g(x, y), a(x, y))),
    "interlaced.png": png(0, 8, lambda x, y: b8(g(x, y)), interlace=1),
    "interlaced-rgba8.png": png(6, 8, lambda x, y: b8(g(x, y), g(x, y), g(x, y), a(x, y)), interlace=1),
}
# Palette: one entry per pixel (35 entries), so each entry can carry that pixel's alpha in tRNS.
entries = [(g(x, y), a(x, y)) for y in range(H) for x in range(W)]
plte = b"".join(bytes([v, v, v]) for v, _ in entries)
files["palette.png"] = png(3, 8, lambda x, y: b8(y * W + x), plte=plte)
files["palette-trns.png"] = png(3, 8, lambda x, y: b8(y * W + x), plte=plte, trns=bytes(al for _, al in entries))

good = files["gray8.png"]
files["truncated.png"] = good[: len(good) // 2]  # cut inside the IDAT chunk
idat = good.index(b"IDAT") + 4
files["corrupt.png"] = good[: idat + 2] + bytes([good[idat + 2] ^ 0xFF]) + good[idat + 3:]  # IDAT CRC mismatch
files["not-a-png.png"] = b"GIF89a this is not a PNG file at all"
# A valid signature and IHDR announcing 20000x20000 (400 megapixels) and a few bytes of data: the
# decoder must refuse it from the header, before allocating the pixel buffer.
files["huge-header.png"] = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")

for name, data in sorted(files.items()):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
print("wrote", len(files), "fixtures to", HERE)
