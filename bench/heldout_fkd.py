#!/usr/bin/env python3
"""Writes the rows of a Kaggle-format training.csv whose faces belong to people held out by fkp-batch's
person-wise rule (FNV-1a 64 of the person's name, mod 5 == 0), so `fkp-batch evaluate` can score aligned
96x96 faces of people a frames-trained model never saw; with --training-people, the other rows instead
(the people a frames-trained model was trained on: what `export-model --calibrate-aligned` fits on).

The CSV rows carry no names: each row is matched to its frame in keypoints.csv by its 15 keypoints,
which are the frame's (68 -> 15) moved by a shift and a scale; after removing both, the nearest frame's
shape is the row's (distances ~1e-6 for the match, ~1e-2 to the next one on ../shared/data).

usage: bench/heldout_fkd.py [--training-people] ../shared/data/fkd/training.csv ../shared/data/frames/keypoints.csv OUT.csv
"""
import csv, re, sys
import numpy as np

def person(name):
    stem = name.rsplit(".", 1)[0]
    return re.sub(r"_\d+b?$", "", stem)

def fnv1a64(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h

def kaggle15(p):
    p = np.asarray(p, float).reshape(68, 2)
    pts = [p[42:48].mean(0), p[36:42].mean(0), p[42], p[45], p[39], p[36], p[22], p[26], p[21], p[17],
           p[30], p[54], p[48], p[51], p[57]]
    return np.array(pts)

def normalised(shapes):
    s = shapes - shapes.mean(1, keepdims=True)
    return (s / np.sqrt((s ** 2).sum((1, 2), keepdims=True))).reshape(len(s), -1)

def main(train_csv, keypoints_csv, out_csv, held_out=True):
    frames = list(csv.reader(open(keypoints_csv)))[1:]
    names = [r[0] for r in frames]
    fshapes = np.array([kaggle15([float(v) for v in r[1:]]) for r in frames])
    with open(train_csv, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    kshapes = np.array([[float(v) for v in r[:30]] for r in rows]).reshape(-1, 15, 2)
    a, b = normalised(kshapes), normalised(fshapes)
    nearest = [int(np.argmin(((b - x) ** 2).sum(1))) for x in a]
    keep = [r for r, j in zip(rows, nearest) if (fnv1a64(person(names[j])) % 5 == 0) == held_out]
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(keep)
    side = "held-out" if held_out else "training"
    print(f"{len(keep)} of {len(rows)} rows are of {side} people -> {out_csv}", file=sys.stderr)

if __name__ == "__main__":
    args = sys.argv[1:]
    training = "--training-people" in args
    args = [a for a in args if a != "--training-people"]
    if len(args) != 3:
        sys.exit(__doc__)
    main(*args, held_out=not training)
