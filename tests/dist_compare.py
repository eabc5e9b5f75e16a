"""Compares runs of one example on different numbers of ranks.

Usage: dist_compare.py TOL REF.h5 REF.csv OTHER.h5 OTHER.csv [...]
Each OTHER's logged losses and final parameters must equal REF's to TOL
(a CSV of - skips the losses),
relative to the largest magnitude of the value compared (the loss, or the
whole parameter tensor): the runs differ only in summation order."""
import csv
import sys

import h5py
import numpy as np


def losses(path):
    with open(path) as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def main():
    tol = float(sys.argv[1])
    ref_h5, ref_csv = sys.argv[2], sys.argv[3]
    ref_loss = losses(ref_csv) if ref_csv != "-" else []
    worst = 0.0
    bad = 0
    with h5py.File(ref_h5, "r") as ref:
        for other_h5, other_csv in zip(sys.argv[4::2], sys.argv[5::2]):
            got = losses(other_csv) if other_csv != "-" else ref_loss
            if [s for s, _ in got] != [s for s, _ in ref_loss]:
                print(f"{other_csv}: logged steps {[s for s, _ in got]} differ from {[s for s, _ in ref_loss]}")
                bad += 1
            for (s, a), (_, b) in zip(ref_loss, got):
                err = abs(a - b) / max(abs(a), 1e-12)
                worst = max(worst, err)
                if err > tol:
                    print(f"{other_csv}: step {s}: loss {b} vs {a} (relative {err:.2e} > {tol})")
                    bad += 1
            with h5py.File(other_h5, "r") as o:
                for name, ds in ref["model"].items():
                    a, b = np.array(ds), np.array(o["model"][name])
                    scale = max(float(np.abs(a).max()), 1e-12)
                    err = float(np.abs(a - b).max()) / scale
                    worst = max(worst, err)
                    if err > tol:
                        print(f"{other_h5}: /model/{name}: max difference {err:.2e} of its largest value > {tol}")
                        bad += 1
    print(f"worst relative difference {worst:.2e} (tolerance {tol}): {'ok' if not bad else 'FAILED'}")
    sys.exit(1 if bad else 0)


main()
