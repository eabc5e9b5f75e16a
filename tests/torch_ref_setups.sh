#!/bin/sh
# bench/torch_ref.py's set-ups load what they name: a child started with a set-up's
# environment maps that set-up's OpenBLAS directory first and, for the +tcmalloc ones,
# tcmalloc (read back by loaded_malloc, as the reference's own check does); glibc's do not.
set -eu
bench=$(dirname "$0")/../bench
/usr/bin/python3 - "$bench" <<'PY'
import subprocess, sys
sys.path.insert(0, sys.argv[1])
import torch_ref as tr
probe = f"import sys; sys.path.insert(0, {sys.argv[1]!r}); import torch_ref as tr; print(tr.loaded_malloc())"
for name, (blas, malloc) in tr.SETUPS.items():
    env, _ = tr.setup_env(name)
    assert env["LD_LIBRARY_PATH"].startswith(tr.BLAS[blas][0] + ":"), name
    got = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True).stdout.strip()
    print(f"{name}: malloc {got}")
    assert got == malloc, f"set-up {name} ran {got}, not {malloc}"
assert set(tr.SETUPS) == {"pthread", "openmp", "pthread+tcmalloc", "openmp+tcmalloc"}
PY
