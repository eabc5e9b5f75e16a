#!/bin/sh
# Preemption: SIGTERM finishes the step, writes the checkpoint and exits 75; the
# checkpoint resumes exactly; a second signal ends the process at once; under MPI a
# signal to one rank stops every rank at the same step.
# Usage: signal_stop.sh WORKDIR CHAR_LM TEXT [MPIEXEC]
set -u
work=$1 lm=$2 text=$3 mpiexec=${4:-}
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
work=$(pwd)
# On any exit, no run of this test may outlive it (their command lines name $work).
trap 'pkill -KILL -f -- "--checkpoint $work/" 2>/dev/null' EXIT
fail() { echo "FAILED: $*"; for f in *.out; do [ -f "$f" ] && { echo "== $f"; tail -5 "$f"; }; done; exit 1; }
n=300
args="--data $text --hidden 64 --batch 8 --seq 32 --sample 0 --eval-every 0 --threads 1 --log-every 1"

# Waits until the CSV log has at least $2 steps (5 s at most).
wait_rows() {
  i=0
  while [ ! -f "$1" ] || [ "$(wc -l <"$1")" -le "$2" ]; do
    i=$((i + 1)); [ $i -gt 500 ] && return 1; sleep 0.01
  done
}

# 1. One process: SIGTERM mid-run, then resume to the end; equal to a straight run.
"$lm" $args --steps $n --checkpoint straight.h5 >straight.out 2>&1 || fail "straight run"
"$lm" $args --steps $n --checkpoint $work/part.h5 --log part.csv >part.out 2>&1 &
pid=$!
wait_rows part.csv 20 || fail "the run did not start"
kill -TERM $pid
wait $pid; rc=$?
[ $rc = 75 ] || fail "SIGTERM: exit $rc, expected 75"
grep -Eq "stopped by signal 15 \(Terminated\) after step [0-9]+; checkpoint $work/part.h5 is written" part.out ||
  fail "SIGTERM: no stop message"
k=$(sed -n 's/.*after step \([0-9]*\);.*/\1/p' part.out)
[ "$k" -lt $n ] || fail "SIGTERM arrived after the run's end (step $k): make the run longer"
"$lm" $args --steps $n --resume part.h5 --checkpoint resumed.h5 >resumed.out 2>&1 || fail "resume after SIGTERM"
grep -q "resuming at step $k of $n" resumed.out || fail "resume did not start at step $k"
for g in /model /optimizer /rng /train/step; do
  h5diff straight.h5 resumed.h5 "$g" "$g" >/dev/null || fail "$g differs between the straight and the resumed run"
done
ls part.h5.tmp.* >/dev/null 2>&1 && fail "a temporary file was left behind"

# 2. SIGINT is the same; a second signal ends the process at once (killed by it, no checkpoint wait).
"$lm" $args --steps 100000 --checkpoint $work/int.h5 --log int.csv >int.out 2>&1 &
pid=$!
wait_rows int.csv 5 || fail "the run did not start"
kill -INT $pid; kill -INT $pid
wait $pid; rc=$?
case $rc in 130|75) ;; *) fail "two SIGINTs: exit $rc, expected 130 (killed by the second) or 75 (stopped by the first)";; esac

# 3. MPI: SIGTERM to rank 1 alone stops both ranks after the same step; resuming on 2 ranks is exact.
if [ -n "$mpiexec" ]; then
  mpi() { "$mpiexec" --allow-run-as-root --oversubscribe -np 2 "$@"; }
  mpi "$lm" $args --steps $n --checkpoint mstraight.h5 >mstraight.out 2>&1 || fail "MPI straight run"
  mpi "$lm" $args --steps $n --checkpoint $work/mpart.h5 --log mpart.csv >mpart.out 2>&1 &
  mpid=$!
  wait_rows mpart.csv 20 || fail "the MPI run did not start"
  r1=""
  for p in $(pgrep -f "$lm"); do
    tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && r1=$p
  done
  [ -n "$r1" ] || fail "rank 1 not found"
  kill -TERM "$r1"
  wait $mpid; rc=$?
  [ $rc = 75 ] || fail "SIGTERM to rank 1: mpirun exit $rc, expected 75"
  [ "$(grep -c 'stopped by' mpart.out)" = 1 ] || fail "SIGTERM to rank 1: the stop is not reported once"
  grep -Eq "stopped by a signal to another rank after step [0-9]+; checkpoint $work/mpart.h5 is written" mpart.out ||
    fail "SIGTERM to rank 1: no stop message from rank 0"
  mpi "$lm" $args --steps $n --resume mpart.h5 --checkpoint mresumed.h5 >mresumed.out 2>&1 || fail "MPI resume"
  # SIGUSR1 to mpirun itself: it forwards that one to every rank (SIGTERM it turns into a kill)
  "$mpiexec" --allow-run-as-root --oversubscribe -np 2 "$lm" $args --steps 100000 --checkpoint $work/usr1.h5 \
    --log usr1.csv >usr1.out 2>&1 &  # not through mpi(): $! must be mpirun's own pid
  mpid=$!
  wait_rows usr1.csv 5 || fail "the MPI run did not start"
  kill -USR1 $mpid
  wait $mpid; rc=$?
  [ $rc = 75 ] || fail "SIGUSR1 to mpirun: exit $rc, expected 75"
  # Rank 0 names the signal, or, when rank 1's copy was seen first at the step's agreement, says so.
  grep -Eq "stopped by (signal 10 \(User defined signal 1\)|a signal to another rank) after step [0-9]+" usr1.out ||
    fail "SIGUSR1: no stop message"
  h5ls usr1.h5/train/step >/dev/null || fail "SIGUSR1: no checkpoint"
  for g in /model /optimizer /train/step; do
    h5diff mstraight.h5 mresumed.h5 "$g" "$g" >/dev/null || fail "MPI: $g differs between the straight and the resumed run"
  done
fi
echo "signal_stop: ok (SIGTERM at step $k of $n)"
