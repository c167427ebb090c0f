#!/usr/bin/env python3
"""OpenCV's CascadeClassifier on the same photos, cascade and parameters as fkp-batch's detector.

    pip install "opencv-python-headless<5"
    python3 bench/detect_opencv.py [PHOTO_DIR_OR_FILES...] [--cascade FILE] [--threads N] [--repeat R]

Prints one JSON line per photo (faces, boxes with their neighbour counts, best-of-R seconds for
detectMultiScale alone, decoding excluded) and a final {"total": ...} line. Grey is BT.601 luma of
the 8-bit RGB values rounded to 0..255, as FKPIngest's PNGCodec.readGray computes it (then rounded by
the Swift detector), so both detectors see the same pixels. OpenCV's thread count defaults to 2
(the Swift detector's default).
"""
import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

DEFAULT_CASCADE = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"
DEFAULT_PHOTOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "photos")


def photos(args):
    out = []
    for p in args or [DEFAULT_PHOTOS]:
        if os.path.isdir(p):
            out += [os.path.join(p, n) for n in sorted(os.listdir(p))
                    if n.lower().endswith((".png", ".jpg", ".jpeg")) and not n.startswith(".")]
        else:
            out.append(p)
    return out


def gray(path):
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SystemExit(f"{path}: cannot decode")
    if img.dtype == np.uint16:  # 16-bit PNG: same mapping as PNGCodec (v * 257 -> v)
        img = np.round(img / 257.0).astype(np.uint8)
    if img.ndim == 2:
        return img
    b, g, r = (img[..., i].astype(np.float32) for i in range(3))  # alpha, if any, is dropped
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--cascade", default=DEFAULT_CASCADE)
    ap.add_argument("--scale-factor", type=float, default=1.1)
    ap.add_argument("--min-neighbors", type=int, default=5)
    ap.add_argument("--min-size", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="time the best of R runs")
    a = ap.parse_args()

    cv2.setNumThreads(a.threads)
    cv2.ocl.setUseOpenCL(False)
    cc = cv2.CascadeClassifier(a.cascade)
    if cc.empty():
        raise SystemExit(f"{a.cascade}: cannot load cascade")

    total_t, total_faces, n = 0.0, 0, 0
    for path in photos(a.paths):
        g = gray(path)
        best = float("inf")
        for _ in range(max(1, a.repeat)):
            t0 = time.perf_counter()
            rects, neighbours = cc.detectMultiScale2(g, scaleFactor=a.scale_factor, minNeighbors=a.min_neighbors,
                                                     minSize=(a.min_size, a.min_size))
            best = min(best, time.perf_counter() - t0)
        boxes = [[int(x), int(y), int(w), int(h), int(k)] for (x, y, w, h), k in zip(rects, neighbours)]
        total_t += best
        total_faces += len(boxes)
        n += 1
        print(json.dumps({"photo": os.path.basename(path), "size": f"{g.shape[1]}x{g.shape[0]}",
                          "faces": len(boxes), "seconds": round(best, 4), "boxes": boxes}))
        sys.stdout.flush()
    print(json.dumps({"total": {"photos": n, "faces": total_faces, "seconds": round(total_t, 3),
                                "opencv": cv2.__version__, "threads": cv2.getNumThreads()}}))


if __name__ == "__main__":
    main()
