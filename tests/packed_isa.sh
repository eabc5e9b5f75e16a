#!/bin/sh
# The packed GEMM's bits under each instruction set the CPU runs: plain C (fmaf), AVX2 and,
# where OpenBLAS runs AVX-512 kernels, AVX-512. Usage: packed_isa.sh PROGRAM
prog=$1
c=$(LOOM_GEMM_ISA=c "$prog") || exit 1
v2=$(LOOM_GEMM_ISA=avx2 "$prog") || exit 1
v512=$(env -u OPENBLAS_CORETYPE "$prog") || exit 1
echo "c $c, avx2 $v2, widest unpinned $v512"
[ "$c" = "$v2" ] && [ "$v2" = "$v512" ] || { echo "packed_isa: the bits depend on the instruction set" >&2; exit 1; }
