#!/bin/sh
# Crash-and-resume equivalence. A run that checkpoints every step is killed with SIGKILL at
# pseudo-random moments and resumed from its checkpoint each time, until a run completes;
# its final parameters, optimizer state, RNG states, data position and carried state must
# equal an uninterrupted run's bit for bit. At least MIN_KILLS kills (default 20) must hit a
# running process (a run that finished before its kill does not count). No temporary file
# may be left at the end: each save removes those of the killed runs.
#
# The moments: the script reads the run's progress lines (one per step, on stderr) and kills
# it after K of them plus D milliseconds, K and D drawn from a fixed pseudo-random sequence.
# K = 0 (1 in 4) kills D = 0-39 ms after the start: start-up, reading the checkpoint, the
# first step. K = 1 (1 in 2) or 2 (1 in 4) kills after that many steps, D = 0-3 ms later:
# inside the save that follows the progress line at once (D = 0 kills without waiting), or
# in the next step. A kill thus advances the run by a step or two, depending on how far the
# run gets ahead of this script; should a sequence of runs complete in fewer kills than
# asked (a loaded machine), another sequence starts from scratch, and each must end equal.
# Usage: crash_resume.sh WORKDIR CHAR_LM TEXT [MIN_KILLS [STEPS]]
set -u
work=$1 lm=$2 text=$3 min=${4:-20} steps=${5:-60}
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1

# The same flags for every run, in a simple command, so that $! is char_lm itself (and not
# a shell around it, whose kill would leave char_lm running).
flags="--hidden 16 --batch 2 --seq 8 --seed 11 --threads 1 --steps $steps --sample 0 --eval-every 0 --log-every 1
       --checkpoint-every 1"
exe=$(readlink -f "$lm")
now() { date +%s.%N; }
secs() { awk "BEGIN { printf \"%.2f\", $2 - $1 }"; }

t0=$(now)
# shellcheck disable=SC2086
"$lm" --data "$text" $flags --checkpoint straight.h5 >straight.log 2>&1 ||
  { echo "the uninterrupted run failed:"; cat straight.log; exit 1; }
t1=$(now)

mkfifo progress || exit 1
r=12345 # the pseudo-random sequence (a 31-bit LCG)
next() { r=$(((r * 1103515245 + 12345) % 2147483648)); }
kills=0 saves_hit=0 runs=0 chains=0
while [ $kills -lt "$min" ]; do
  chains=$((chains + 1))
  [ $chains -le 5 ] || { echo "5 sequences of runs completed with only $kills kills in all"; exit 1; }
  rm -f ck.h5
  last=0 done=0
  while [ $done -eq 0 ]; do
    runs=$((runs + 1))
    [ $runs -le 1000 ] || { echo "no complete run after 1000 starts"; exit 1; }
    if [ -f ck.h5 ]; then set -- --resume ck.h5; else set --; fi
    # shellcheck disable=SC2086
    "$lm" --data "$text" $flags "$@" --checkpoint ck.h5 >run.log 2>progress &
    pid=$!
    exec 3<progress
    next
    case $((r / 65536 % 4)) in 0) k=0 ;; 3) k=2 ;; *) k=1 ;; esac
    next
    if [ $k -eq 0 ]; then d=$((r / 65536 % 40)); else d=$((r / 65536 % 4)); fi
    n=0
    while [ $n -lt $k ] && IFS= read -r line <&3; do
      case $line in "step "*/*) n=$((n + 1)) ;; esac
    done
    is=$(readlink /proc/$pid/exe 2>/dev/null) # empty once it has exited, or without /proc
    if [ $n -gt 0 ] && [ -n "$is" ] && [ "$is" != "$exe" ]; then
      echo "pid $pid is $is, not $exe"; kill -KILL $pid; exit 1
    fi
    [ $d -gt 0 ] && sleep "$(printf '0.%03d' $d)"
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    rc=$?
    exec 3<&-
    # The step this run resumed at (if its buffered output got out): never behind the last.
    from=$(sed -n 's/^resuming at step \([0-9]*\) of.*/\1/p' run.log)
    if [ -n "$from" ]; then
      [ "$from" -ge $last ] || { echo "run $runs resumed at step $from, after one at step $last"; exit 1; }
      last=$from
    fi
    case $rc in
    0) done=1 ;;
    137)
      kills=$((kills + 1))
      # a temporary file left: the kill hit a save between its create and its rename
      for f in ck.h5.tmp.*; do [ -e "$f" ] && saves_hit=$((saves_hit + 1)) && break; done
      ;;
    *) echo "run $runs (K=$k, D=$d ms) exited with $rc:"; cat run.log; exit 1 ;;
    esac
  done
  status=0
  for g in /model /optimizer /rng /data /state /train/step /train/epoch; do
    if ! h5diff straight.h5 ck.h5 "$g" "$g" >diff.log 2>&1; then
      echo "$g differs between the uninterrupted and the killed-and-resumed run (sequence $chains):"
      head -20 diff.log
      status=1
    fi
  done
  for f in ck.h5.tmp.*; do
    [ -e "$f" ] && { echo "temporary file $f of a killed run was left behind"; status=1; }
  done
  [ $status -eq 0 ] || exit 1
done
t2=$(now)
rm -f progress
echo "$kills kills in $runs runs ($saves_hit inside a save), $chains sequence(s) of $steps steps, all equal to" \
  "the uninterrupted run; uninterrupted $(secs "$t0" "$t1") s, killed and resumed $(secs "$t1" "$t2") s"
exit 0
