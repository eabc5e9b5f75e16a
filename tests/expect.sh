#!/bin/sh
# Runs a command and checks its exit code and that its output (stdout+stderr) matches a regex.
# Usage: expect.sh EXIT_CODE REGEX COMMAND [ARGS...]
want=$1 re=$2
shift 2
out=$("$@" 2>&1)
rc=$?
if [ "$rc" -ne "$want" ]; then
  printf 'expected exit %s, got %s from: %s\n%s\n' "$want" "$rc" "$*" "$out"
  exit 1
fi
if ! printf '%s\n' "$out" | grep -Eq -- "$re"; then
  printf 'output of: %s\ndoes not match /%s/:\n%s\n' "$*" "$re" "$out"
  exit 1
fi
exit 0
