#!/bin/sh
# Kills a run that checkpoints every step at random moments; the checkpoint on
# disk must always load. Usage: kill_during_save.sh WORKDIR CHAR_LM TEXT
set -u
work=$1 lm=$2 text=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
i=0
while [ $i -lt 12 ]; do
  "$lm" --data "$text" --hidden 16 --batch 2 --seq 8 --steps 1000000 --sample 0 --eval-every 0 \
        --checkpoint ck.h5 --checkpoint-every 1 >/dev/null 2>&1 &
  pid=$!
  # a different moment each time: 50 ms to 600 ms
  sleep "0.$(( (i * 37) % 55 + 5 ))"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  if [ -f ck.h5 ]; then
    if ! "$lm" --resume ck.h5 --eval "$text" >eval.log 2>&1; then
      echo "after kill $i the checkpoint does not load:"
      cat eval.log
      exit 1
    fi
  fi
  i=$((i + 1))
done
[ -f ck.h5 ] || { echo "no checkpoint was ever written"; exit 1; }
grep -q "nats/char" eval.log || { cat eval.log; exit 1; }
exit 0
