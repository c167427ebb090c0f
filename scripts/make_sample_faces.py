#!/usr/bin/env python3
"""Writes samples/faces/face_<ImageId>.png (96x96 8-bit grey) from the first rows of a Kaggle test.csv.
Standard library only. Usage: scripts/make_sample_faces.py [test.csv] [count]"""
import struct, sys, zlib, os

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fkd", "test.csv")
count = int(sys.argv[2]) if len(sys.argv) > 2 else 6
out = os.path.join(os.path.dirname(__file__), "..", "samples", "faces")
os.makedirs(out, exist_ok=True)

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

with open(src) as f:
    assert f.readline().strip() == "ImageId,Image"
    for _ in range(count):
        image_id, pixels = f.readline().strip().split(",")
        px = bytes(int(v) for v in pixels.split())
        assert len(px) == 96 * 96
        raw = b"".join(b"\x00" + px[y * 96:(y + 1) * 96] for y in range(96))
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 96, 96, 8, 0, 0, 0, 0))
        png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        open(os.path.join(out, f"face_{image_id}.png"), "wb").write(png)
print(f"wrote {count} faces to {out}")
