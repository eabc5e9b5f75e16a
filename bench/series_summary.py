#!/usr/bin/python3
"""The ratios the README quotes, read from one bench/series.sh directory: per round,
loom's tokens/s over PyTorch's best and loom's share of that round's sgemm peak; the
default threads over 1 thread; the unpinned round; M on 2 ranks x 1 thread over 1 rank
x 2 threads. Computed here so no figure is copied by hand.
Usage: /usr/bin/python3 bench/series_summary.py DIR"""
import glob
import os
import re
import sys

CONFIGS = ("S", "M", "L", "C")


def loom_rows(path):
    """{config: (ms/step, tokens/s, peak column)} and the sgemm peak, from a bench log."""
    rows, peak = {}, None
    with open(path) as f:
        for line in f:
            m = re.match(r"sgemm peak: ([\d.]+)", line)
            if m:
                peak = float(m.group(1))
            cols = line.split()
            if cols and cols[0] in CONFIGS and len(cols) > 9:
                rows[cols[0]] = (float(cols[6]), float(cols[7]), cols[9])
    return rows, peak


def torch_best(path):
    """{config: tokens/s} from the 'best of the set-ups' block of a torch_ref.py log."""
    best, inside = {}, False
    with open(path) as f:
        for line in f:
            inside = inside or "best of the set-ups" in line
            cols = line.split()
            if inside and cols and cols[0] in CONFIGS:
                best[cols[0]] = float(cols[1])
    return best


def ratios(loom, torch):
    cells = []
    for c in CONFIGS:
        if c in loom and c in torch:
            tok, share = loom[c][1], loom[c][2]
            cells.append(f"{c} {tok:,.0f} / {torch[c]:,.0f} = {tok / torch[c]:.2f}x, {share}")
    return "; ".join(cells)


def main(d):
    n = 1
    while os.path.exists(f"{d}/loom-{n}.txt") and os.path.exists(f"{d}/torch-{n}.txt"):
        loom, peak = loom_rows(f"{d}/loom-{n}.txt")
        print(f"round {n} (sgemm peak {peak}): {ratios(loom, torch_best(f'{d}/torch-{n}.txt'))}")
        n += 1
    if n > 1 and os.path.exists(f"{d}/loom-1thread.txt"):
        one, _ = loom_rows(f"{d}/loom-1thread.txt")
        last, _ = loom_rows(f"{d}/loom-{n - 1}.txt")
        print("default threads over 1 thread (last round): " +
              ", ".join(f"{c} {one[c][0] / last[c][0]:.2f}x" for c in CONFIGS if c in one and c in last))
    if os.path.exists(f"{d}/loom-unpinned.txt") and os.path.exists(f"{d}/torch-unpinned.txt"):
        loom, peak = loom_rows(f"{d}/loom-unpinned.txt")
        print(f"unpinned (sgemm peak {peak}): {ratios(loom, torch_best(f'{d}/torch-unpinned.txt'))}")
    for one in sorted(glob.glob(f"{d}/mpi-M-1x2-*.txt")):
        two = one.replace("1x2", "2x1")
        a, b = loom_rows(one)[0].get("M"), loom_rows(two)[0].get("M") if os.path.exists(two) else None
        if a and b:
            print(f"M, 2 ranks x 1 thread over 1 rank x 2 threads ({os.path.basename(two)}): "
                  f"{a[0]:.1f} / {b[0]:.1f} ms = {a[0] / b[0]:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: series_summary.py DIR (a bench/series.sh output directory)")
    main(sys.argv[1])
