#!/bin/sh
# loom as users get it: installs the build into a fresh prefix, builds
# tests/consumer/sine.c against it with find_package (shared), pkg-config
# (shared) and pkg-config --static, runs each (one under mpirun -np 2, one
# resumed), checks the BLAS it loads, compiles the installed headers as C11
# and C++17, and builds loom as a subproject with Criterion hidden.
# Usage: consumer.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -eu
src=$1 build=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
fail() { echo "consumer: $*" >&2; exit 1; }
blas_ok() { ldd "$1" | grep -q 'openblas-openmp/libopenblas' && ! ldd "$1" | grep -q 'pthread/libopenblas' || fail "$1 does not load the OpenMP OpenBLAS"; }
cc=${CC:-cc}
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig

# The example programs, as prefixed commands.
for cmd in loom-char-lm loom-adding-problem loom-timeseries loom-custom-cell loom-word-lm loom-classify; do
    "$prefix/bin/$cmd" --help >/dev/null || fail "$cmd --help failed"
done
blas_ok "$prefix/bin/loom-char-lm"

# The README's program is this test's program, so copy and paste works.
awk '/^<!-- tests\/consumer\/sine.c -->$/{getline; on=1; next} on && /^```$/{exit} on' "$src/README.md" > "$work/readme_sine.c"
cmp -s "$work/readme_sine.c" "$src/tests/consumer/sine.c" || fail "README's program differs from tests/consumer/sine.c"
awk '/^<!-- tests\/consumer\/CMakeLists.txt -->$/{getline; on=1; next} on && /^```$/{exit} on' "$src/README.md" > "$work/readme_cmake.txt"
cmp -s "$work/readme_cmake.txt" "$src/tests/consumer/CMakeLists.txt" || fail "README's CMakeLists.txt differs from tests/consumer/CMakeLists.txt"

# 1. find_package(loom), shared
cmake -S "$src/tests/consumer" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null || fail "find_package configure failed"
cmake --build "$work/cm" >/dev/null || fail "find_package build failed"
# 2. pkg-config, shared (the program finds libloom through its RUNPATH)
$cc -std=c11 -o "$work/sine_pc" "$src/tests/consumer/sine.c" $(pkg-config --cflags --libs loom) \
    -Wl,-rpath,"$(pkg-config --variable=libdir loom)" || fail "pkg-config shared build failed"
# 3. pkg-config --static: the archive, and what Libs.private adds
$cc -std=c11 -o "$work/sine_static" "$src/tests/consumer/sine.c" $(pkg-config --cflags loom) \
    -L"$(pkg-config --variable=libdir loom)" -Wl,-Bstatic -lloom -Wl,-Bdynamic $(pkg-config --static --libs loom) \
    || fail "pkg-config --static build failed"
ldd "$work/sine_static" | grep -q libloom && fail "sine_static loads libloom.so"
for exe in "$work/cm/sine" "$work/sine_pc" "$work/sine_static"; do
    blas_ok "$exe"
    (cd "$work" && "$exe" 30 "$(basename "$exe").h5" 2>/dev/null | grep -q '^step 30: loss') || fail "$exe did not train"
done
ldd "$work/cm/sine" | grep -q "$prefix/lib/libloom.so.0" || fail "the find_package build does not load the installed libloom.so.0"

# Exact resume: 20 steps, then on to 30, ends where a straight 30-step run does.
cd "$work"
straight=$("$work/sine_pc" 30 straight.h5 2>/dev/null)
"$work/sine_pc" 20 resumed.h5 >/dev/null 2>&1 || fail "the 20-step run failed"
resumed=$("$work/sine_pc" 30 resumed.h5 --resume 2>/dev/null)
[ "$straight" = "$resumed" ] || fail "resumed run ended at '$resumed', straight run at '$straight'"

# Under mpirun, two ranks: the same program, the batch split.
timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 "$work/cm/sine" 30 mpi.h5 2>/dev/null | grep -q '^step 30: loss' \
    || fail "the find_package build did not train under mpirun -np 2"

# The installed headers alone, as C11 and as C++17, warnings as errors.
printf '#include <loom.h>\nint main(void) { return loom_error_message()[0]; }\n' > umbrella.c
$cc -std=c11 -Wall -Wextra -Wpedantic -Werror -I"$prefix/include/loom" -c umbrella.c -o umbrella_c.o || fail "loom.h is not clean C11"
c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -I"$prefix/include/loom" -x c++ -c umbrella.c -o umbrella_cxx.o \
    || fail "loom.h is not clean C++17"

# A subproject: configures and builds with pkg-config (and so Criterion) out of reach.
cmake -S "$src/tests/consumer/sub" -B "$work/sub" -DLOOM_SOURCE_DIR="$src" -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON \
    >/dev/null || fail "add_subdirectory configure failed"
cmake --build "$work/sub" -j2 >/dev/null || fail "add_subdirectory build failed"
[ ! -e "$work/sub/loom/examples" ] || fail "the subproject built loom's examples"
"$work/sub/sine" 5 sub.h5 2>/dev/null | grep -q '^step 5: loss' || fail "the subproject build did not train"
echo "consumer: find_package, pkg-config, pkg-config --static, mpirun, resume, headers, subproject: ok"
