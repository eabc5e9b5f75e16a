#!/bin/sh
# bench/series_summary.py on a made-up series whose ratios are known by hand: 9,000 / 6,000
# tokens/s is 1.50x, and 300 ms on 1 rank x 2 threads against 315 on 2 x 1 is 0.95x.
set -eu
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
hdr='config I H B T ranks ms/step tokens/s GFLOP/s peak fma'
printf 'sgemm peak: 200.0 GFLOP/s\n%s\nC 64 512 50 50 1x2 277.8 9000 180.0 90%% 81%%\n' "$hdr" >"$d/loom-1.txt"
printf 'config tokens/s\nC 9999 1.0\n== best of the set-ups\nconfig tokens/s GFLOP/s set-up\nC 6000 120.0 openmp\n' >"$d/torch-1.txt"
printf '%s\nC 64 512 50 50 1x1 500.0 5000 100.0 - -\n' "$hdr" >"$d/loom-1thread.txt"
printf '%s\nM 512 512 64 100 1x2 300.0 21333 230.0 - -\n' "$hdr" >"$d/mpi-M-1x2-1.txt"
printf '%s\nM 512 512 64 100 2x1 315.0 20317 220.0 - -\n' "$hdr" >"$d/mpi-M-2x1-1.txt"
out=$(/usr/bin/python3 "$(dirname "$0")/../bench/series_summary.py" "$d")
echo "$out"
echo "$out" | grep -q 'round 1 (sgemm peak 200.0): C 9,000 / 6,000 = 1.50x, 90%'
echo "$out" | grep -q 'default threads over 1 thread (last round): C 1.80x'
echo "$out" | grep -q '300.0 / 315.0 ms = 0.95x'
