#!/usr/bin/env bash
# The README's benchmark series, back to back: ROUNDS rounds, each running every
# configuration as a pair, loom (bench --peak 4096, the default threads, its own process)
# then PyTorch's four set-ups (torch_ref.py), so that each pair and the sgemm peak its share
# is taken of are measured within a minute of each other (this machine's speed moves by
# up to 10% from one minute to the next); each round ends with the adding problem at 1, 2
# and the default threads. Then loom on 1 thread; then one round with
# OPENBLAS_CORETYPE unset, paired the same way; then M on 2 MPI ranks x 1 thread against
# 1 rank x 2 threads, twice (when mpirun is there). Logs go to OUT (default
# bench-series-<date>), then the ratios the README quotes and their medians over the
# rounds (bench/series_summary.py); about 9 minutes for 3 rounds on 2 cores.
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
CONFIGS="S M L C"
# One round: each configuration's loom run (peak first) and PyTorch run, back to back.
# $1: the round's name in the log files; the rest: a command prefix (env -u ...).
round() {
    local name=$1
    shift
    for c in $CONFIGS; do
        "$@" "$BENCH" --config "$c" --peak 4096 >"$OUT/loom-$name-$c.txt"
        "$@" /usr/bin/python3 bench/torch_ref.py --config "$c" >"$OUT/torch-$name-$c.txt"
    done
}
# The adding problem (H = 64, B = 64, T = 100, 200 steps, the LSTM and the RNN), wall time at
# 1 thread, 2 threads and the default: the issue's "default never slower than a fixed count".
adding() {
    local s e
    for t in 1 2 default; do
        s=$(date +%s.%N)
        if [ "$t" = default ]; then "$ADDING" --steps 200; else "$ADDING" --steps 200 --threads "$t"; fi >/dev/null 2>>"$OUT/progress-adding.txt"
        e=$(date +%s.%N)
        echo "threads $t: $(echo "$s $e" | awk '{printf "%.3f", $2 - $1}') s"
    done
}
ADDING="$BUILD/examples/adding_problem"
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r" >&2
    round "$r" env
    if [ -x "$ADDING" ]; then adding >"$OUT/adding-$r.txt"; fi
done
"$BENCH" --config all --peak 4096 --threads 1 >"$OUT/loom-1thread.txt"
round unpinned env -u OPENBLAS_CORETYPE
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
for f in "$OUT"/torch-*.txt; do echo "== $f"; sed -n '/best of the set-ups/,$p' "$f" | grep -E '^[SMLC] '; done
echo "== summary (bench/series_summary.py $OUT)"
/usr/bin/python3 bench/series_summary.py "$OUT"
