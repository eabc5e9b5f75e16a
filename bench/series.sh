#!/usr/bin/env bash
# The README's benchmark series, back to back: ROUNDS rounds of loom (bench --peak 4096,
# all configurations, the default threads) each followed by PyTorch's two set-ups
# (torch_ref.py); then loom on 1 thread; then one round with OPENBLAS_CORETYPE unset; then
# M on 2 MPI ranks x 1 thread against 1 rank x 2 threads, twice (when mpirun is there).
# Logs go to OUT (default bench-series-<date>), then the ratios the README quotes
# (bench/series_summary.py); about 6 minutes for 3 rounds on 2 cores.
# Usage: bash bench/series.sh [build dir, default build/test] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/test}
ROUNDS=${2:-3}
OUT=${OUT:-bench-series-$(date +%Y%m%d-%H%M)}
BENCH="$BUILD/bench/bench"
if [ ! -x "$BENCH" ]; then
    echo "series: $BENCH not found; build first (bash scripts/build.sh or scripts/test.sh)" >&2
    exit 1
fi
if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "series: /usr/bin/python3 cannot import torch (apt-get install python3-torch)" >&2
    exit 1
fi
mkdir -p "$OUT"
{ date; uname -a; grep -m1 'model name' /proc/cpuinfo; nproc; echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-unset}";
  git rev-parse HEAD; uptime; } >"$OUT/machine.txt" || true
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r" >&2
    "$BENCH" --config all --peak 4096 >"$OUT/loom-$r.txt"
    /usr/bin/python3 bench/torch_ref.py >"$OUT/torch-$r.txt"
done
"$BENCH" --config all --peak 4096 --threads 1 >"$OUT/loom-1thread.txt"
env -u OPENBLAS_CORETYPE "$BENCH" --config all --peak 4096 >"$OUT/loom-unpinned.txt"
env -u OPENBLAS_CORETYPE /usr/bin/python3 bench/torch_ref.py >"$OUT/torch-unpinned.txt"
# M on 2 ranks x 1 thread against 1 rank x 2 threads, alternated twice (the issue's data-parallel target).
if command -v mpirun >/dev/null; then
    for r in 1 2; do
        "$BENCH" --config M --steps 7 >"$OUT/mpi-M-1x2-$r.txt"
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun -np 2 --bind-to core \
            "$BENCH" --config M --steps 7 --threads 1 >"$OUT/mpi-M-2x1-$r.txt" || echo "series: mpirun run $r failed" >&2
    done
fi
uptime >>"$OUT/machine.txt"
for f in "$OUT"/loom-*.txt "$OUT"/mpi-*.txt; do
    [ -e "$f" ] || continue
    echo "== $f"; grep -E '^(sgemm|[SMLC] )' "$f" || echo "(no rows: see the log)"
done
for f in "$OUT"/torch-*.txt; do echo "== $f"; sed -n '/best of the set-ups/,$p' "$f"; done
echo "== summary (bench/series_summary.py $OUT)"
/usr/bin/python3 bench/series_summary.py "$OUT"
