#!/bin/sh
# Faults end a data-parallel job with a message and a non-zero exit; they never hang it.
# Usage: dist_faults.sh WORKDIR MPIEXEC ADDING_PROBLEM
set -u
work=$1 mpiexec=$2 ex=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAILED: $*"; [ -f out.txt ] && cat out.txt; exit 1; }
args="--cell lstm --hidden 16 --batch 6 --seq 12 --steps 400 --log-every 100 --threads 1"
mpi() { n=$1; shift; timeout 60 "$mpiexec" --allow-run-as-root --oversubscribe -np "$n" "$@"; }
now() { date +%s.%N; }
# expect CODE REGEX SECONDS: the last command's exit code, output and duration
expect() {
  [ "$rc" -ne 0 ] || fail "$4: exit code 0"
  [ "$1" = any ] || [ "$rc" -eq "$1" ] || fail "$4: exit code $rc, expected $1"
  grep -Eq -- "$2" out.txt || fail "$4: output does not match /$2/"
  awk -v a="$t0" -v b="$(now)" -v m="$3" 'BEGIN { exit !(b - a <= m) }' || fail "$4: took longer than $3 s"
}
# A rank killed by a signal ends the job within 10 s.
t0=$(now); LOOM_FAULT=kill:1:3 mpi 3 "$ex" $args >out.txt 2>&1; rc=$?
expect any "rank 1 .*signal 9" 10 "kill one of 3 ranks"
# An error on rank 1 ends the job; the message names the rank and the step.
t0=$(now); LOOM_FAULT=error:1:2 mpi 3 "$ex" $args >out.txt 2>&1; rc=$?
expect 1 "rank 1: step 2: injected fault" 10 "error on rank 1"
# A stalled rank is caught by the comm timeout; the message names the rank that waited.
t0=$(now); LOOM_FAULT=stall:1:2 mpi 2 "$ex" $args --comm-timeout 2 >out.txt 2>&1; rc=$?
expect 1 "rank 0: step 2: all-reduce: waited [0-9]+ s \(the comm timeout\)" 15 "stalled rank 1"
# Rank 0's own work (evaluation, checkpoint writes) may outlast the comm timeout: not a stall.
t0=$(now); LOOM_FAULT=slow:0:2 mpi 2 "$ex" $args --steps 4 --eval-every 2 --comm-timeout 1 >out.txt 2>&1; rc=$?
[ "$rc" -eq 0 ] || fail "slow evaluation on rank 0 ended the job (exit $rc)"
# A checkpoint that one rank cannot open ends the job with that rank's message, not a timeout.
"$ex" $args --steps 2 --checkpoint good.h5 >/dev/null 2>&1 || fail "making good.h5"
t0=$(now); timeout 60 "$mpiexec" --allow-run-as-root --oversubscribe -np 1 "$ex" --resume good.h5 --steps 4 : \
  -np 1 "$ex" --resume missing.h5 --steps 4 --comm-timeout 0 >out.txt 2>&1; rc=$?
expect any "rank 1: --resume: checkpoint missing.h5: No such file" 10 "resume file missing on rank 1"
# A batch that does not divide among the ranks: one clear message.
t0=$(now); mpi 2 "$ex" $args --batch 5 >out.txt 2>&1; rc=$?
expect 2 "the global batch of 5 does not divide evenly among 2 ranks" 10 "indivisible batch"
[ "$(grep -c 'does not divide' out.txt)" = 1 ] || fail "indivisible batch: reported more than once"
# An unwritable checkpoint directory is found at start-up, and said once.
t0=$(now); mpi 2 "$ex" $args --steps 3 --checkpoint /nonexistent/dir/ck.h5 >out.txt 2>&1; rc=$?
expect 1 "checkpoint /nonexistent/dir/ck.h5: directory /nonexistent/dir is not writable" 10 "unwritable checkpoint directory"
[ "$(grep -c 'is not writable' out.txt)" = 1 ] || fail "unwritable checkpoint directory: reported more than once"
# A save that fails on rank 0 later ends the job, naming rank 0 and the step.
t0=$(now); LOOM_FAULT=save:0:2 mpi 2 "$ex" $args --steps 3 --checkpoint ck.h5 --checkpoint-every 1 >out.txt 2>&1; rc=$?
expect 1 "rank 0: step 2: checkpoint ck.h5: injected fault" 10 "failed save"
# A NaN gradient on rank 1 stops every rank before the update; the last checkpoint still loads.
t0=$(now); LOOM_FAULT=nan:1:3 mpi 2 "$ex" $args --checkpoint nan.h5 --checkpoint-every 1 >out.txt 2>&1; rc=$?
expect 1 "step 3: the loss is [-0-9.e+]+ and the gradient norm -?nan: stopped before the update" 10 "NaN gradient"
[ "$(grep -c 'stopped before the update' out.txt)" = 1 ] || fail "NaN gradient: reported more than once"
"$ex" --resume nan.h5 --steps 3 >out.txt 2>&1 || fail "the checkpoint before the NaN does not load"
grep -q "resuming at step 3 of 3" out.txt || fail "the checkpoint before the NaN is not at step 3"
# A finite but exploding loss stops too.
t0=$(now); "$ex" $args --lr 1e9 --checkpoint big.h5 --checkpoint-every 1 >out.txt 2>&1; rc=$?
expect 1 "training diverged; stopped before the update" 10 "--lr 1e9"
"$ex" --resume big.h5 --steps 1 >out.txt 2>&1 || fail "the checkpoint before the divergence does not load"
echo "dist_faults: ok"
