#!/bin/sh
# Data parallelism end to end for one example: 1, 2 and 3 ranks train the same model
# (losses and final parameters equal to TOL, the only difference being summation
# order); the same rank count gives the same bits; a run stopped on 2 ranks resumes
# on 3, and one stopped on 3 resumes on 1, to the straight run's parameters; only
# rank 0 prints, logs and checkpoints.
# Usage: dist_examples.sh WORKDIR MPIEXEC EXAMPLE TOL STEPS STOP [ARGS...]
set -u
work=$1 mpiexec=$2 ex=$3 tol=$4 steps=$5 stop=$6
shift 6
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAILED: $*"; exit 1; }
# run N DIR ARGS...: the example on N ranks (1: without mpirun) in DIR
run() {
  n=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  if [ "$n" = 1 ]; then
    (cd "$dir" && "$ex" "$@" >out.txt 2>err.txt)
  else
    (cd "$dir" && timeout 120 "$mpiexec" --allow-run-as-root --oversubscribe -np "$n" "$ex" "$@" >out.txt 2>err.txt)
  fi || { cat "$dir/out.txt" "$dir/err.txt"; fail "$dir: exit code $?"; }
}
common="--steps $steps --log-every 1 --threads 1 --checkpoint ck.h5 --log log.csv"
run 1 n1 "$@" $common
run 2 n2 "$@" $common
run 3 n3 "$@" $common
run 2 n2again "$@" $common
/usr/bin/python3 "$here/dist_compare.py" "$tol" n1/ck.h5 n1/log.csv n2/ck.h5 n2/log.csv n3/ck.h5 n3/log.csv ||
  fail "1, 2 and 3 ranks disagree"
for g in /model /optimizer /train /state /rng /data; do
  h5ls n2/ck.h5$g >/dev/null 2>&1 || continue
  h5diff n2/ck.h5 n2again/ck.h5 $g $g >/dev/null || fail "two runs on 2 ranks differ in $g"
done
[ "$(h5dump -a /world_size n3/ck.h5 | grep -c '(0): 3')" = 1 ] || fail "the 3-rank checkpoint does not record world_size 3"
# Rank 0 alone writes: one log, one checkpoint, nothing named by rank, one progress stream.
for n in 2 3; do
  [ "$(echo $(ls n$n))" = "ck.h5 err.txt log.csv out.txt" ] || fail "n$n holds: $(ls n$n)"
  [ "$(grep -c "^step $steps/$steps " n$n/err.txt)" = 1 ] || { cat n$n/err.txt; fail "n$n: not one progress line per step"; }
  [ "$(grep -c '^step [0-9]*/' n$n/err.txt)" = "$steps" ] || { cat n$n/err.txt; fail "n$n: $(grep -c '^step' n$n/err.txt) progress lines for $steps steps"; }
  [ "$(wc -l <n$n/log.csv)" = $((steps + 1)) ] || fail "n$n: the log has $(wc -l <n$n/log.csv) lines"
done
# Resume on another rank count: 2 -> 3 and 3 -> 1.
run 2 r23 "$@" $common --stop-at "$stop"
run 3 r23 "$@" --resume ck.h5 $common
grep -q "resuming at step $stop of $steps" r23/out.txt || fail "2 -> 3 did not resume at step $stop"
run 3 r31 "$@" $common --stop-at "$stop"
run 1 r31 "$@" --resume ck.h5 $common
grep -q "resuming at step $stop of $steps" r31/out.txt || fail "3 -> 1 did not resume at step $stop"
/usr/bin/python3 "$here/dist_compare.py" "$tol" n1/ck.h5 - r23/ck.h5 - r31/ck.h5 - || fail "resumed runs disagree"
echo "dist_examples: ok"
