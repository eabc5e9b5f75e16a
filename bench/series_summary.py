#!/usr/bin/python3
"""The ratios the README quotes, read from one bench/series.sh directory: per round and
configuration, loom's tokens/s over PyTorch's best and loom's share of the sgemm peak
measured just before it, then their medians over the rounds; the default threads over
1 thread; the unpinned round; M's peak RSS against PyTorch's net figure; M on 2 ranks x
1 thread over 1 rank x 2 threads. Computed here so no figure is copied by hand.
Usage: /usr/bin/python3 bench/series_summary.py DIR"""
import glob
import os
import re
import statistics
import sys

CONFIGS = ("S", "M", "L", "C")


def loom_rows(path):
    """{config: (ms/step, tokens/s, peak share in %, RSS MiB)} and the sgemm peak, from a bench log."""
    rows, peak = {}, None
    with open(path) as f:
        for line in f:
            m = re.match(r"sgemm peak: ([\d.]+)", line)
            if m:
                peak = float(m.group(1))
            cols = line.split()
            if cols and cols[0] in CONFIGS and len(cols) > 9:
                share = float(cols[9].rstrip("%")) if cols[9].endswith("%") else None
                rss = float(cols[-1]) if re.fullmatch(r"[\d.]+", cols[-1]) else None
                rows[cols[0]] = (float(cols[6]), float(cols[7]), share, rss)
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


def torch_net_rss(path, config):
    """[(set-up, peak RSS, RSS after the import)] for config, from a torch_ref.py log."""
    out, setup, imported = [], None, None
    with open(path) as f:
        for line in f:
            m = re.match(r"== ([\w+]+):", line)
            if m:
                setup = m.group(1)
            m = re.search(r"peak RSS after the import ([\d.]+) MiB", line)
            if m:
                imported = float(m.group(1))
            cols = line.split()
            if cols and cols[0] == config and len(cols) == 9 and setup and imported is not None:
                out.append((setup, float(cols[8]), imported))
    return out


def round_pairs(d, name):
    """{config: (loom's row, that run's sgemm peak, PyTorch's best tokens/s)} for round name."""
    pairs = {}
    for c in CONFIGS:
        lp, tp = f"{d}/loom-{name}-{c}.txt", f"{d}/torch-{name}-{c}.txt"
        if not (os.path.exists(lp) and os.path.exists(tp)):
            continue
        (rows, peak), best = loom_rows(lp), torch_best(tp)
        if c in rows and c in best:
            pairs[c] = (rows[c], peak, best[c])
    return pairs


def cells(pairs):
    out = []
    for c, (row, peak, best) in pairs.items():
        share = f"{row[2]:.0f}% of {peak}" if row[2] is not None else "no peak"
        out.append(f"{c} {row[1]:,.0f} / {best:,.0f} = {row[1] / best:.2f}x, {share}")
    return "; ".join(out)


def main(d):
    rounds = []
    while pairs := round_pairs(d, str(len(rounds) + 1)):
        rounds.append(pairs)
        print(f"round {len(rounds)}: {cells(pairs)}")
    if rounds:
        med = []
        for c in CONFIGS:
            got = [r[c] for r in rounds if c in r]
            if got:
                ratio = statistics.median(row[1] / best for row, _, best in got)
                shares = [row[2] for row, _, _ in got if row[2] is not None]
                share = f", {statistics.median(shares):.0f}% of the peak" if shares else ""
                med.append(f"{c} {ratio:.2f}x{share}")
        print(f"median over the {len(rounds)} rounds: " + "; ".join(med))
    if rounds and os.path.exists(f"{d}/loom-1thread.txt"):
        one, last = loom_rows(f"{d}/loom-1thread.txt")[0], rounds[-1]
        print("default threads over 1 thread (last round): " +
              ", ".join(f"{c} {one[c][0] / last[c][0][0]:.2f}x" for c in CONFIGS if c in one and c in last))
    unpinned = round_pairs(d, "unpinned")
    if unpinned:
        print(f"unpinned: {cells(unpinned)}")
    if rounds and "M" in rounds[-1] and rounds[-1]["M"][0][3] and os.path.exists(f"{d}/torch-{len(rounds)}-M.txt"):
        loom_rss = rounds[-1]["M"][0][3]
        nets = [(peak - imp, s, peak, imp) for s, peak, imp in torch_net_rss(f"{d}/torch-{len(rounds)}-M.txt", "M")]
        if nets:
            net, s, peak, imp = min(nets)
            print(f"M peak RSS (last round): loom {loom_rss:.0f} MiB; PyTorch's smaller net {net:.0f} MiB "
                  f"({s}: {peak:.0f} - {imp:.0f} after the import); loom / net = {loom_rss / net:.2f}")
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
