#!/usr/bin/env python3
"""Measures CanonicalFace.kaggleFrame: where Kaggle's 96x96 faces sit in a photo model's canonical crop.
Each row's 15 keypoints are fitted onto the mean shape by the least-squares similarity (as
CanonicalFace.alignment does); the median of each parameter (a, b, tx, ty) over the rows of the
training people (fkp-batch's person-wise rule, rows matched to frames as in heldout_fkd.py) and,
for comparison, of the held-out people.

usage: bench/kaggle_framing.py ../shared/data/fkd/training.csv ../shared/data/frames/keypoints.csv
"""
import csv, os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import heldout_fkd as H

# CanonicalFace.meanShape (Sources/FKPAlign/CanonicalFace.swift)
MEAN = np.array([65.39, 37.35, 30.48, 37.69, 58.50, 37.69, 71.92, 36.99, 37.24, 37.94, 23.96, 37.40,
                 57.86, 25.95, 79.17, 28.09, 37.61, 26.21, 15.94, 28.68, 48.93, 58.33, 62.65, 76.21,
                 34.36, 76.50, 48.92, 71.99, 49.13, 83.55]).reshape(15, 2)

def fit(p, q):
    pm, qm = p.mean(0), q.mean(0)
    a0, b0 = p - pm, q - qm
    den = (a0 ** 2).sum()
    a = (a0 * b0).sum() / den
    b = (a0[:, 0] * b0[:, 1] - a0[:, 1] * b0[:, 0]).sum() / den
    t = qm - np.array([[a, -b], [b, a]]) @ pm
    return [a, b, t[0], t[1]]

def main(train_csv, keypoints_csv):
    frames = list(csv.reader(open(keypoints_csv)))[1:]
    names = [r[0] for r in frames]
    fshapes = np.array([H.kaggle15([float(v) for v in r[1:]]) for r in frames])
    rows = list(csv.reader(open(train_csv, newline="")))[1:]
    kshapes = np.array([[float(v) for v in r[:30]] for r in rows]).reshape(-1, 15, 2)
    a, b = H.normalised(kshapes), H.normalised(fshapes)
    held = np.array([H.fnv1a64(H.person(names[int(np.argmin(((b - x) ** 2).sum(1)))])) % 5 == 0 for x in a])
    params = np.array([fit(k, MEAN) for k in kshapes])
    for label, sel in (("training people", ~held), ("held-out people", held)):
        m = np.median(params[sel], 0)
        print(f"{label} ({sel.sum()} rows): a {m[0]:.4f} b {m[1]:.4f} tx {m[2]:.4f} ty {m[3]:.4f}")

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
