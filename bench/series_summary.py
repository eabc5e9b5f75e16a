#!/usr/bin/python3
"""The ratios the README quotes, read from one bench/series.sh directory: per round and
configuration, loom's tokens/s over PyTorch's best of its four set-ups and loom's share of
the sgemm peak measured just before it, then their medians over the rounds, and the
medians against the guide's anchor too (the better of the two BLAS set-ups, glibc's
malloc); the default threads over 1 thread; the adding problem's wall times; the unpinned
round; M's peak RSS against PyTorch's net figures; M on 2 ranks x 1 thread over 1 rank x
2 threads. Computed here so no figure is copied by hand. With --table, the README's main
table instead: each configuration's median round (by loom / PyTorch's best).
Usage: /usr/bin/python3 bench/series_summary.py [--table] DIR"""
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


def torch_setups(path, config):
    """{set-up: (tokens/s, peak RSS, RSS after the import)} for config: each set-up's own
    row of a torch_ref.py log (the import's figure None where the header lacks it)."""
    out, setup, imported = {}, None, None
    with open(path) as f:
        for line in f:
            m = re.match(r"== ([\w+]+):", line)
            if m:
                setup, imported = m.group(1), None
            m = re.search(r"peak RSS after the import ([\d.]+) MiB", line)
            if m:
                imported = float(m.group(1))
            cols = line.split()
            if cols and cols[0] == config and len(cols) == 9 and setup:
                out[setup] = (float(cols[6]), float(cols[8]), imported)
    return out


def glibc_best(path, config):
    """The guide's anchor: the better of the set-ups on glibc's malloc (the two BLAS builds)."""
    got = [tok for s, (tok, _, _) in torch_setups(path, config).items() if "+" not in s]
    return max(got) if got else None


def round_pairs(d, name):
    """{config: (loom's row, that run's sgemm peak, PyTorch's best tokens/s, its best on glibc)}."""
    pairs = {}
    for c in CONFIGS:
        lp, tp = f"{d}/loom-{name}-{c}.txt", f"{d}/torch-{name}-{c}.txt"
        if not (os.path.exists(lp) and os.path.exists(tp)):
            continue
        (rows, peak), best = loom_rows(lp), torch_best(tp)
        if c in rows and c in best:
            pairs[c] = (rows[c], peak, best[c], glibc_best(tp, c))
    return pairs


def all_rounds(d):
    """Round 1, 2, ... of directory d, up to the first missing one."""
    rounds = []
    while pairs := round_pairs(d, str(len(rounds) + 1)):
        rounds.append(pairs)
    return rounds


def adding_times(path):
    """{'1' | '2' | 'default': wall seconds} from an adding-<round>.txt of series.sh."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"threads (\w+): ([\d.]+) s", line)
            if m:
                out[m.group(1)] = float(m.group(2))
    return out


def cells(pairs):
    out = []
    for c, (row, peak, best, _) in pairs.items():
        share = f"{row[2]:.0f}% of {peak}" if row[2] is not None else "no peak"
        out.append(f"{c} {row[1]:,.0f} / {best:,.0f} = {row[1] / best:.2f}x, {share}")
    return "; ".join(out)


def bench_cols(path, config):
    """config's row of a bench log, split into its columns."""
    with open(path) as f:
        return next((line.split() for line in f if line.split()[:1] == [config]), None)


def table(d):
    """The README's main table: per configuration its median round, loom's figures (and on
    1 thread), each PyTorch set-up's tokens/s, and loom over both anchors."""
    rounds = all_rounds(d)
    setups = ("pthread", "openmp", "pthread+tcmalloc", "openmp+tcmalloc")
    print("| config | I | H | B | T | round | loom, default threads | % of sgemm peak | % of FMA ceiling | loom 1 thread | "
          + " | ".join(f"torch {s}" for s in setups) + " | loom / torch's best | loom / torch's best on glibc |")
    print("|" + "---|" * (12 + len(setups)))
    one = f"{d}/loom-1thread.txt"
    for c in CONFIGS:
        got = sorted((r[c][0][1] / r[c][2], i + 1) for i, r in enumerate(rounds) if c in r)
        if not got:
            continue
        ratio, n = got[(len(got) - 1) // 2]
        row, peak, best, glibc = rounds[n - 1][c]
        cols = bench_cols(f"{d}/loom-{n}-{c}.txt", c)
        solo = bench_cols(one, c) if os.path.exists(one) else None
        torch = torch_setups(f"{d}/torch-{n}-{c}.txt", c)
        print(f"| {c} | {' | '.join(cols[1:5])} | {n} | {float(cols[7]):,.0f} tok/s, {cols[8]} GFLOP/s | "
              f"{cols[9]} of {peak} | {cols[10]} | " + (f"{float(solo[7]):,.0f}, {solo[8]}" if solo else "-") + " | "
              + " | ".join(f"{torch[s][0]:,.0f}" if s in torch else "-" for s in setups)
              + f" | **{ratio:.2f}x** | " + (f"{row[1] / glibc:.2f}x |" if glibc else "- |"))


def main(d):
    rounds = all_rounds(d)
    for i, pairs in enumerate(rounds):
        print(f"round {i + 1}: {cells(pairs)}")
    if rounds:
        med = []
        for c in CONFIGS:
            got = [r[c] for r in rounds if c in r]
            if got:
                ratio = statistics.median(row[1] / best for row, _, best, _ in got)
                shares = [row[2] for row, _, _, _ in got if row[2] is not None]
                share = f", {statistics.median(shares):.0f}% of the peak" if shares else ""
                med.append(f"{c} {ratio:.2f}x{share}")
        print(f"median over the {len(rounds)} rounds: " + "; ".join(med))
        glibc = []
        for c in CONFIGS:
            got = [r[c][0][1] / r[c][3] for r in rounds if c in r and r[c][3]]
            if got:
                glibc.append(f"{c} {statistics.median(got):.2f}x ({', '.join(f'{x:.2f}x' for x in got)})")
        if glibc:
            print("median against the guide's anchor (the two BLAS set-ups, glibc): " + "; ".join(glibc))
    adding = [adding_times(p) for p in sorted(glob.glob(f"{d}/adding-*.txt"))]
    adding = [a for a in adding if {"1", "2", "default"} <= a.keys()]
    if adding:
        med = {k: statistics.median(a[k] for a in adding) for k in ("default", "1", "2")}
        worst = max(a["default"] / min(a["1"], a["2"]) for a in adding)
        print(f"adding problem over {len(adding)} rounds, median wall s: default {med['default']:.2f}, "
              f"1 thread {med['1']:.2f}, 2 threads {med['2']:.2f}; default over the best fixed count: "
              f"median {med['default'] / min(med['1'], med['2']):.2f}, worst round {worst:.2f}")
    if rounds and os.path.exists(f"{d}/loom-1thread.txt"):
        one, last = loom_rows(f"{d}/loom-1thread.txt")[0], rounds[-1]
        print("default threads over 1 thread (last round): " +
              ", ".join(f"{c} {one[c][0] / last[c][0][0]:.2f}x" for c in CONFIGS if c in one and c in last))
    unpinned = round_pairs(d, "unpinned")
    if unpinned:
        print(f"unpinned: {cells(unpinned)}")
    if rounds and "M" in rounds[-1] and rounds[-1]["M"][0][3] and os.path.exists(f"{d}/torch-{len(rounds)}-M.txt"):
        loom_rss = rounds[-1]["M"][0][3]
        nets = [(peak - imp, s, peak, imp) for s, (_, peak, imp) in torch_setups(f"{d}/torch-{len(rounds)}-M.txt", "M").items()
                if imp is not None]
        for label, pick in (("smaller", nets), ("smaller glibc", [n for n in nets if "+" not in n[1]])):
            if pick:
                net, s, peak, imp = min(pick)
                print(f"M peak RSS (last round): loom {loom_rss:.0f} MiB; PyTorch's {label} net {net:.0f} MiB "
                      f"({s}: {peak:.0f} - {imp:.0f} after the import); loom / net = {loom_rss / net:.2f}")
    for one in sorted(glob.glob(f"{d}/mpi-M-1x2-*.txt")):
        two = one.replace("1x2", "2x1")
        a, b = loom_rows(one)[0].get("M"), loom_rows(two)[0].get("M") if os.path.exists(two) else None
        if a and b:
            print(f"M, 2 ranks x 1 thread over 1 rank x 2 threads ({os.path.basename(two)}): "
                  f"{a[0]:.1f} / {b[0]:.1f} ms = {a[0] / b[0]:.2f}x")


if __name__ == "__main__":
    args = sys.argv[1:]
    want_table = args[:1] == ["--table"]
    args = args[1:] if want_table else args
    if len(args) != 1 or not os.path.isdir(args[0]):
        sys.exit("usage: series_summary.py [--table] DIR (a bench/series.sh output directory)")
    (table if want_table else main)(args[0])
