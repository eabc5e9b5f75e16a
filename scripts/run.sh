#!/usr/bin/env bash
# Quick start 1: install what is missing, build Release, run the main job.
# Extra arguments go to the main job, e.g. bash scripts/run.sh --steps 200
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh run
bash scripts/build.sh build/release -DCMAKE_BUILD_TYPE=Release -DLOOM_TESTS=OFF
exec build/release/examples/char_lm "$@"
