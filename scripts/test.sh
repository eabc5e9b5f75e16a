#!/usr/bin/env bash
# Quick start 2: install what is missing, build and run the whole suite,
# once in the normal build (warnings as errors) and once under ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash scripts/deps.sh test
jobs=$(nproc)
echo "== normal build (Release, -Werror) =="
bash scripts/build.sh build/test -DCMAKE_BUILD_TYPE=Release -DLOOM_WERROR=ON
(cd build/test && ctest --output-on-failure -j "$jobs")
echo "== sanitizer build (ASan + UBSan) =="
bash scripts/build.sh build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_WERROR=ON -DLOOM_SANITIZE=ON
(cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j "$jobs")
