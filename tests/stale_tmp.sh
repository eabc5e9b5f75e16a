#!/bin/sh
# A save to DIR/ck.h5 removes the DIR/ck.h5.tmp.<pid> files of processes that no longer
# exist (saves killed mid-write) and keeps everything else: the temporary file of a live
# process (another job or rank writing now), other names, other directories.
# Usage: stale_tmp.sh WORKDIR CHAR_LM TEXT
set -u
work=$1 lm=$2 text=$3
rm -rf "$work" && mkdir -p "$work/sub" && cd "$work" || exit 1

sleep 300 &
live=$!
trap 'kill $live 2>/dev/null' EXIT
sh -c 'exit 0' &
dead=$!
wait $dead # reaped: no process has this pid now
if kill -0 $dead 2>/dev/null; then echo "pid $dead was reused at once; run again"; exit 1; fi

stale="sub/ck.h5.tmp.$dead"
keep="sub/ck.h5.tmp.$live sub/ck.h5.tmp.1 sub/other.h5.tmp.$dead sub/ck.h5.tmp.${dead}x sub/ck.h5.tmp.x$dead
      sub/ck.h5.tmp. sub/ck.h5.tmp.0$dead sub/ck.h5.step3 ck.h5.tmp.$dead"
for f in $stale $keep; do echo "not a checkpoint" >"$f"; done

"$lm" --data "$text" --hidden 8 --batch 2 --seq 8 --steps 2 --sample 0 --checkpoint sub/ck.h5 >run.log 2>&1 ||
  { echo "the run failed:"; cat run.log; exit 1; }

status=0
[ -e "$stale" ] && { echo "$stale (pid $dead, dead) was not removed"; status=1; }
for f in $keep; do
  [ -e "$f" ] || { echo "$f was removed, but it is not a dead process's temporary file of sub/ck.h5"; status=1; }
done
[ -f sub/ck.h5 ] || { echo "no checkpoint sub/ck.h5 was written"; status=1; }
kill -0 $live 2>/dev/null || { echo "the live process $live is gone: the test proves nothing"; status=1; }
ls sub
exit $status
