#!/usr/bin/env python3
"""Compare masks (or label maps) pixel by pixel.

    compare_masks.py A.png B.png
    compare_masks.py DIR_A DIR_B          # every *.png present in both folders
    compare_masks.py --labels A.png B.png # label maps: agreement + per-class IoU
                                          # (automatic for files named *label*)

Masks are read as 8-bit grayscale; a pixel is foreground when its value is
> 127 (so 0/255 masks and soft alpha images both work).

  pixel agreement = count(fg_A == fg_B) / (W * H)
  foreground IoU  = count(fg_A & fg_B) / count(fg_A | fg_B)   (1.0 if both empty)

For label maps (--labels), agreement = count(L_A == L_B) / (W * H) and IoU is
printed per class present in either map.

With --min-agreement / --min-iou the exit status is 1 when any pair is below
the limit (the Rust tests use 0.99 and 0.9).
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np


def read_gray(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(path)
    return img


def mask_metrics(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    fa, fb = a > 127, b > 127
    agreement = float(np.mean(fa == fb))
    union = np.count_nonzero(fa | fb)
    iou = 1.0 if union == 0 else np.count_nonzero(fa & fb) / union
    return agreement, float(iou)


def label_metrics(a: np.ndarray, b: np.ndarray) -> tuple[float, dict[int, float]]:
    agreement = float(np.mean(a == b))
    ious = {}
    for c in np.union1d(np.unique(a), np.unique(b)):
        ca, cb = a == c, b == c
        ious[int(c)] = np.count_nonzero(ca & cb) / np.count_nonzero(ca | cb)
    return agreement, ious


def pairs(a: str, b: str) -> list[tuple[str, str, str]]:
    if os.path.isdir(a) and os.path.isdir(b):
        names = sorted(set(n for n in os.listdir(a) if n.endswith(".png"))
                       & set(n for n in os.listdir(b) if n.endswith(".png")))
        return [(n, os.path.join(a, n), os.path.join(b, n)) for n in names]
    return [(os.path.basename(a), a, b)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--labels", action="store_true", help="compare label maps")
    ap.add_argument("--min-agreement", type=float, default=None)
    ap.add_argument("--min-iou", type=float, default=None)
    args = ap.parse_args()

    ok = True
    ps = pairs(args.a, args.b)
    if not ps:
        print("no common PNG files", file=sys.stderr)
        return 2
    for name, pa, pb in ps:
        a, b = read_gray(pa), read_gray(pb)
        if a.shape != b.shape:
            print(f"{name}: size differs {a.shape[::-1]} vs {b.shape[::-1]}")
            ok = False
            continue
        if args.labels or "label" in name:
            agr, ious = label_metrics(a, b)
            per = " ".join(f"{c}:{v:.3f}" for c, v in ious.items())
            print(f"{name}: agreement {agr:.5f}  per-class IoU {per}")
            if args.min_agreement is not None and agr < args.min_agreement:
                ok = False
        else:
            agr, iou = mask_metrics(a, b)
            fa, fb = np.mean(a > 127), np.mean(b > 127)
            print(f"{name}: agreement {agr:.5f}  fg IoU {iou:.5f}  fg fraction {fa:.4f} vs {fb:.4f}")
            if args.min_agreement is not None and agr < args.min_agreement:
                ok = False
            if args.min_iou is not None and iou < args.min_iou:
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
