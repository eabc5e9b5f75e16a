#!/bin/sh
# A save that fails partway keeps the previous checkpoint byte for byte, removes its
# temporary file, and stops the run with a non-zero exit and a message naming the
# checkpoint and the cause.
#   fsize: RLIMIT_FSIZE (`ulimit -f`, SIGXFSZ ignored) below the checkpoint's size on a
#          resumed run: "File too large" (EFBIG); needs no privileges.
#   tmpfs: a tmpfs mounted with room for one and a half checkpoints: the second save finds
#          the disk full, "No space left on device" (ENOSPC). Needs root (mount); exits 77
#          (skipped) where mounting is not permitted.
# Usage: disk_full.sh fsize|tmpfs WORKDIR CHAR_LM TEXT
set -u
mode=$1 work=$2 lm=$3 text=$4
umount "$work/mnt" 2>/dev/null # left mounted by a run killed before its trap
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
work=$(pwd)

lm() { "$lm" --data "$text" --hidden 16 --batch 2 --seq 8 --seed 5 --threads 1 --sample 0 --eval-every 0 "$@"; }

# Checks after the failed run: exit code, message, no temporary file, the old checkpoint
# intact (the same bytes as before.h5, if there is one) and loadable at step $want.
check() { # DIR CAUSE WANT_STEP RC
  dir=$1 cause=$2 want=$3 rc=$4 status=0
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then
    echo "the failing save gave exit code $rc, not an error exit (1-127)"; status=1
  fi
  if ! grep -Eq "checkpoint $dir/ck\.h5: .*$dir/ck\.h5\.tmp\.[0-9]+.* failed: $cause" fail.log; then
    echo "no message naming $dir/ck.h5 and '$cause'"; status=1
  fi
  for f in "$dir"/ck.h5.tmp.*; do
    [ -e "$f" ] && { echo "temporary file $f was left behind"; status=1; }
  done
  if [ -f before.h5 ] && ! cmp -s before.h5 "$dir/ck.h5"; then echo "$dir/ck.h5 changed"; status=1; fi
  if ! lm --resume "$dir/ck.h5" --eval "$text" >eval.log 2>&1 || ! grep -q "nats/char" eval.log; then
    echo "$dir/ck.h5 does not load:"; cat eval.log; status=1
  fi
  step=$(h5dump -d /train/step "$dir/ck.h5" | sed -n 's/^ *(0): *\([0-9]*\).*/\1/p')
  [ "$step" = "$want" ] || { echo "$dir/ck.h5 is at step '$step', not $want"; status=1; }
  [ $status -eq 0 ] || { echo "--- the run's output:"; cat fail.log; }
  return $status
}

case $mode in
fsize)
  # A checkpoint of step 3 without a limit, then a resumed run whose next save outgrows the
  # limit. The limit counts 512-byte blocks and also applies to the logs (a few hundred bytes).
  lm --steps 3 --checkpoint ck.h5 >first.log 2>&1 || { cat first.log; exit 1; }
  cp ck.h5 before.h5
  size=$(wc -c <ck.h5)
  blocks=$((size / 512 / 2))
  sh -c 'trap "" XFSZ; ulimit -f "$1"; shift; exec "$@"' sh "$blocks" "$lm" --resume ck.h5 --data "$text" \
    --hidden 16 --batch 2 --seq 8 --seed 5 --threads 1 --sample 0 --eval-every 0 --steps 6 \
    --checkpoint "$work/ck.h5" --checkpoint-every 1 >fail.log 2>&1
  rc=$?
  check "$work" "File too large" 3 $rc || exit 1
  echo "ok: exit $rc, checkpoint of $size bytes against a limit of $blocks blocks:"
  grep "File too large" fail.log
  ;;
tmpfs)
  # The size of one checkpoint, measured here; the tmpfs holds it and a half.
  lm --steps 1 --checkpoint probe.h5 >probe.log 2>&1 || { cat probe.log; exit 1; }
  size=$(wc -c <probe.h5)
  kb=$(((size * 3 / 2 + 4095) / 4096 * 4))
  mkdir mnt
  if ! mount -t tmpfs -o size=${kb}k tmpfs mnt 2>mount.log; then
    echo "skipped: cannot mount a tmpfs here (needs root): $(cat mount.log)"
    exit 77
  fi
  trap 'cd "$work" && umount mnt' EXIT
  trap 'exit 1' INT TERM HUP
  # The first save (step 1) fits; the second needs room for its temporary file beside it.
  lm --steps 6 --checkpoint "$work/mnt/ck.h5" --checkpoint-every 1 >fail.log 2>&1
  rc=$?
  check "$work/mnt" "No space left on device" 1 $rc || exit 1
  echo "ok: exit $rc, a ${kb} KB tmpfs and a checkpoint of $size bytes:"
  grep "No space left on device" fail.log
  ;;
*)
  echo "usage: disk_full.sh fsize|tmpfs WORKDIR CHAR_LM TEXT"; exit 2
  ;;
esac
exit 0
