#!/bin/sh
# bench/series_summary.py on a made-up series whose figures are known by hand: C's three
# rounds are 9,000 / 6,000 = 1.50x at 90%, 8,000 / 6,400 = 1.25x at 80% and 9,900 / 6,000
# = 1.65x at 95% (medians 1.50x, 90%); against the glibc set-up alone (4,500, 5,000 and
# 6,000) 2.00x, 1.60x and 1.65x (median 1.65x), where a tcmalloc row's 9,999 must not
# count; 500 ms on 1 thread against the last round's 250 is 2.00x; M's 150 MiB against
# PyTorch's smaller net, 600 - 227 = 373 MiB, is 0.40, against glibc's 620 - 230 = 390
# MiB 0.38; 300 ms on 1 rank x 2 threads against 315 on 2 x 1 is 0.95x. The adding
# problem's medians are 1.70 s by default, 2.10 on 1 thread and 1.80 on 2 (0.94), and
# round 1's 1.60 against its 1.50 on 2 threads is the worst, 1.07. --table picks C's
# median round, round 1, with its set-ups' rows and 1 thread's 5,000 tokens/s.
set -eu
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
hdr='config I H B T ranks ms/step tokens/s GFLOP/s peak fma fwd bwd wait allred optim allred arena RSS'
loom() { # round, config row (ms, tokens/s, share), peak
    printf 'sgemm peak: %s GFLOP/s\n%s\n%s 0 0 0 0 1x2 %s 0 0 0 0 0 0 0 100 150\n' "$4" "$hdr" "$2" "$3" >"$d/loom-$1-$2.txt"
}
torch() { # round, config, best tokens/s, the glibc set-up's tokens/s
    printf '== pthread: pthread OpenBLAS (x), threads torch default, malloc glibc\n# torch 1.13, peak RSS after the import 230 MiB\n' >"$d/torch-$1-$2.txt"
    printf '%s 0 0 0 0 1.0 %s 1.0 620\n' "$2" "$4" >>"$d/torch-$1-$2.txt"
    printf '== openmp+tcmalloc: openmp OpenBLAS (y), threads 2, malloc tcmalloc\n# torch 1.13, peak RSS after the import 227 MiB\n' >>"$d/torch-$1-$2.txt"
    printf '%s 0 0 0 0 1.0 9999 1.0 600\n' "$2" >>"$d/torch-$1-$2.txt"
    printf '== best of the set-ups\nconfig tokens/s GFLOP/s set-up\n%s %s 120.0 openmp\n' "$2" "$3" >>"$d/torch-$1-$2.txt"
}
loom 1 C '277.8 9000 0 90%' 200.0; torch 1 C 6000 4500
loom 2 C '312.5 8000 0 80%' 190.0; torch 2 C 6400 5000
loom 3 C '250.0 9900 0 95%' 205.0; torch 3 C 6000 6000
loom 3 M '365.7 17500 0 88%' 205.0; torch 3 M 8000 7000
loom unpinned C '150.0 16000 0 80%' 390.0; torch unpinned C 8000 8000
printf 'threads 1: 2.000 s\nthreads 2: 1.500 s\nthreads default: 1.600 s\n' >"$d/adding-1.txt"
printf 'threads 1: 2.200 s\nthreads 2: 1.800 s\nthreads default: 1.700 s\n' >"$d/adding-2.txt"
printf 'threads 1: 2.100 s\nthreads 2: 1.900 s\nthreads default: 1.800 s\n' >"$d/adding-3.txt"
printf '%s\nC 0 0 0 0 1x1 500.0 5000 100.0 - -\n' "$hdr" >"$d/loom-1thread.txt"
printf '%s\nM 512 512 64 100 1x2 300.0 21333 230.0 - -\n' "$hdr" >"$d/mpi-M-1x2-1.txt"
printf '%s\nM 512 512 64 100 2x1 315.0 20317 220.0 - -\n' "$hdr" >"$d/mpi-M-2x1-1.txt"
out=$(/usr/bin/python3 "$(dirname "$0")/../bench/series_summary.py" "$d")
echo "$out"
echo "$out" | grep -q '^round 1: C 9,000 / 6,000 = 1.50x, 90% of 200.0$'
echo "$out" | grep -q '^round 3: M 17,500 / 8,000 = 2.19x, 88% of 205.0; C 9,900 / 6,000 = 1.65x, 95% of 205.0$'
echo "$out" | grep -q '^median over the 3 rounds: M 2.19x, 88% of the peak; C 1.50x, 90% of the peak$'
echo "$out" | grep -q 'default threads over 1 thread (last round): C 2.00x'
echo "$out" | grep -q '^unpinned: C 16,000 / 8,000 = 2.00x, 80% of 390.0$'
echo "$out" | grep -q 'loom 150 MiB; PyTorch.s smaller net 373 MiB (openmp+tcmalloc: 600 - 227 after the import); loom / net = 0.40'
echo "$out" | grep -q 'loom 150 MiB; PyTorch.s smaller glibc net 390 MiB (pthread: 620 - 230 after the import); loom / net = 0.38'
echo "$out" | grep -q '^median against the guide.s anchor (the two BLAS set-ups, glibc): M 2.50x (2.50x); C 1.65x (2.00x, 1.60x, 1.65x)$'
echo "$out" | grep -q '^adding problem over 3 rounds, median wall s: default 1.70, 1 thread 2.10, 2 threads 1.80; default over the best fixed count: median 0.94, worst round 1.07$'
echo "$out" | grep -q '300.0 / 315.0 ms = 0.95x'
table=$(/usr/bin/python3 "$(dirname "$0")/../bench/series_summary.py" --table "$d")
echo "$table"
echo "$table" | grep -qF '| C | 0 | 0 | 0 | 0 | 1 | 9,000 tok/s, 0 GFLOP/s | 90% of 200.0 | 0 | 5,000, 100.0 | 4,500 | - | - | 9,999 | **1.50x** | 2.00x |'
