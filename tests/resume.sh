#!/bin/sh
# Exact resume: N steps straight, and a run of N stopped at k then resumed to N, give bit-identical
# parameters, optimizer state, RNG states, data position and carried state.
# Usage: resume.sh WORKDIR EXAMPLE N K [ARGS...]
set -u
work=$1 ex=$2 n=$3 k=$4
shift 4
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
"$ex" "$@" --steps "$n" --checkpoint straight.h5 >straight.log 2>&1 || { cat straight.log; exit 1; }
"$ex" "$@" --steps "$n" --stop-at "$k" --checkpoint part.h5 >part.log 2>&1 || { cat part.log; exit 1; }
"$ex" "$@" --resume part.h5 --steps "$n" --checkpoint resumed.h5 >resumed.log 2>&1 || { cat resumed.log; exit 1; }
grep -q "resuming at step $k of $n" resumed.log || { echo "resume did not start at step $k"; cat resumed.log; exit 1; }
status=0
for g in /model /optimizer /rng /data /state /train/step /train/epoch; do
  if h5ls straight.h5"$g" >/dev/null 2>&1; then
    if ! h5diff straight.h5 resumed.h5 "$g" "$g"; then
      echo "$g differs between the straight and the resumed run"
      status=1
    fi
  fi
done
h5ls straight.h5/model >/dev/null 2>&1 || { echo "no /model in the checkpoint"; status=1; }
exit $status
