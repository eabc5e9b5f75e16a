#!/bin/sh
# Flags and checkpoints agree or the run says so: on --resume a given hyper-parameter
# applies with a note naming both values, one not given keeps the checkpoint's, and the
# optimizer's kind or the architecture may not change. Every optimizer flag is honoured.
# Usage: resume_flags.sh WORKDIR EXAMPLE TEXT
set -u
work=$1 lm=$2 text=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAILED: $*"; [ -f out.txt ] && cat out.txt; exit 1; }
args="--data $text --hidden 8 --batch 2 --seq 8 --sample 0 --eval-every 0 --log-every 1"
# hyper = lr momentum nesterov beta1 beta2 eps alpha weight_decay, as saved
hyper() { /usr/bin/python3 -c "import h5py,sys; print(' '.join('%g' % v for v in h5py.File(sys.argv[1])['/optimizer/hyper'][:]))" "$1"; }

# adamw with --weight-decay 0 saves 0, not adamw's default 0.01; betas and eps as given
"$lm" $args --steps 2 --optim adamw --weight-decay 0 --beta1 0.8 --beta2 0.99 --eps 1e-6 --checkpoint a.h5 >out.txt 2>&1 ||
  fail "adamw run"
[ "$(hyper a.h5)" = "0.002 0 0 0.8 0.99 1e-06 0.99 0" ] || fail "adamw flags not honoured: hyper is $(hyper a.h5)"

# sgd with momentum 0.9; resumed with nothing given: the checkpoint's settings, no note
"$lm" $args --steps 2 --optim sgd --lr 0.05 --momentum 0.9 --sched step --step-size 3 --gamma 0.5 --checkpoint s.h5 \
  >out.txt 2>&1 || fail "sgd run"
"$lm" $args --steps 4 --resume s.h5 --checkpoint s2.h5 >out.txt 2>&1 || fail "plain resume"
grep -q "note:" out.txt && fail "a plain resume made a note"
[ "$(hyper s2.h5)" = "0.05 0.9 0 0.9 0.999 1e-08 0.99 0" ] || fail "plain resume changed the settings: $(hyper s2.h5)"
# the step schedule's size and factor came back too: lr 0.05 for steps 1-3, 0.025 from step 4
"$lm" $args --steps 5 --resume s.h5 --log log.csv >out.txt 2>&1 || fail "resume with a log"
grep -q "^3,[^,]*,0.05," log.csv && grep -q "^4,[^,]*,0.025," log.csv || { cat log.csv; fail "step schedule not resumed"; }

# given flags apply, each with a note naming both values
"$lm" $args --steps 4 --resume s.h5 --momentum 0 --lr 0.01 --checkpoint s3.h5 >out.txt 2>&1 || fail "resume with flags"
grep -q "note: momentum 0 applies; s.h5 was trained with 0.9" out.txt || fail "no note for --momentum"
grep -q "note: lr 0.01 applies; s.h5 was trained with 0.05" out.txt || fail "no note for --lr"
[ "$(hyper s3.h5)" = "0.01 0 0 0.9 0.999 1e-08 0.99 0" ] || fail "--momentum 0 / --lr not applied: $(hyper s3.h5)"

# dropout may change (with a note); the optimizer's kind and the architecture may not
"$lm" $args --steps 3 --resume s.h5 --dropout 0.25 >out.txt 2>&1 || fail "resume with --dropout"
grep -q "note: --dropout 0.25 applies; s.h5 was trained with 0" out.txt || fail "no note for --dropout"
"$lm" $args --steps 3 --resume s.h5 --optim adam >out.txt 2>&1
[ $? = 2 ] || fail "--optim adam on an sgd checkpoint: not refused with exit 2"
grep -q -- "--optim adam conflicts with checkpoint s.h5, which has optim sgd" out.txt || fail "--optim conflict message"
"$lm" $args --steps 3 --resume s.h5 --hidden 9 >out.txt 2>&1
[ $? = 2 ] && grep -q -- "--hidden 9 conflicts with checkpoint s.h5, which has hidden 8" out.txt || fail "--hidden conflict"
echo "resume_flags: ok"
